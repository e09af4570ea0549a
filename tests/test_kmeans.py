"""k-means: centres of separated blobs, agreement with scikit-learn from the same start, codebook API, errors."""

import pytest
import torch

from course_lib.errors import AudioInputError, ConfigError
from course_lib.quantize.kmeans import KMeans, kmeans, kmeans_plus_plus, nearest_centers

cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine; run `make gpu-check` on one"
)

BLOB_CENTERS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def blobs(n_per_blob: int = 50, std: float = 0.5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = std * torch.randn(len(BLOB_CENTERS), n_per_blob, 2, generator=generator)
    return (BLOB_CENTERS[:, None] + noise).reshape(-1, 2)  # (4 * n, 2)


def test_finds_the_centres_of_separated_blobs():
    x = blobs()
    km = KMeans(4, seed=0).fit(x)
    # Each true centre has one found centre within 0.3 (the blobs' std is 0.5, 50 points each).
    distance = torch.cdist(BLOB_CENTERS, km.centers)  # (4, 4)
    assert distance.min(1).values.max() < 0.3
    assert sorted(torch.bincount(km.labels_).tolist()) == [50, 50, 50, 50]
    assert km.n_iter_ <= 5  # separated blobs converge at once


@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_matches_scikit_learn_lloyd_from_the_same_start(tol):
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(600, 4, generator=generator, dtype=torch.float64)
    init = x[torch.randperm(600, generator=generator)[:12]].clone()
    init[0] = 100.0  # a centre that no point is nearest to: the empty cluster is relocated as sklearn does
    ours = KMeans(12, max_iter=30, tol=tol, init=init).fit(x)
    theirs = sklearn_cluster.KMeans(12, init=init.numpy(), n_init=1, max_iter=30, tol=tol, algorithm="lloyd").fit(
        x.numpy()
    )
    assert torch.equal(ours.labels_, torch.from_numpy(theirs.labels_).long())
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-3)  # the brief's tolerance: 0.1%
    assert ours.n_iter_ == theirs.n_iter_
    torch.testing.assert_close(ours.centers, torch.from_numpy(theirs.cluster_centers_))


@pytest.mark.parametrize("n_codes", [5, 256])  # 256: the CPU's blocked row maximum; 5: plain max
def test_nearest_centers_equals_brute_force_in_any_chunking(n_codes):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(300, 8, generator=generator)
    centers = torch.randn(n_codes, 8, generator=generator)
    expected = torch.cdist(x.double(), centers.double()).argmin(1)
    for chunk_size, threads in ((None, 1), (7, 1), (7, 2), (300, 2)):  # 2: blocks shared by two workers
        indices, sq_dist = nearest_centers(x, centers, chunk_size=chunk_size, threads=threads)
        assert torch.equal(indices, expected)
        torch.testing.assert_close(sq_dist, ((x - centers[indices]) ** 2).sum(1), rtol=1e-4, atol=1e-4)


def test_encode_and_decode_are_the_codebook_look_up():
    x = blobs()
    km = KMeans(4, seed=0).fit(x)
    assert torch.equal(km.encode(km.centers), torch.arange(4))
    assert torch.equal(km.decode(km.labels_), km.centers[km.labels_])
    assert torch.equal(km.encode(x.view(8, 25, 2)), km.labels_.view(8, 25))  # any leading shape
    assert km.decode(km.encode(x)).shape == x.shape


def test_fit_with_two_threads_gives_the_same_result_and_restores_the_thread_count():
    x = blobs(std=3.0)
    one = KMeans(6, seed=0, chunk_size=16).fit(x)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = KMeans(6, seed=0, chunk_size=16).fit(x)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.labels_, two.labels_) and torch.equal(one.centers, two.centers)


def test_inertia_is_the_sum_of_squared_distances():
    x = blobs(std=2.0)
    km = KMeans(4, max_iter=3, seed=0).fit(x)
    assert km.inertia_ == pytest.approx(float(((x - km.centers[km.labels_]) ** 2).sum()), rel=1e-6)


def test_reproducible_from_the_seed():
    x = blobs(std=3.0)
    first, again, other = (KMeans(6, seed=s).fit(x) for s in (0, 0, 1))
    assert torch.equal(first.centers, again.centers) and torch.equal(first.labels_, again.labels_)
    assert not torch.equal(first.centers, other.centers)


def test_kmeans_plus_plus_picks_distinct_data_points_and_functional_form_agrees():
    x = blobs()
    centers = kmeans_plus_plus(x, 4, torch.Generator().manual_seed(0))
    assert all(any(torch.equal(c, row) for row in x) for c in centers)
    # D² sampling lands in four different blobs.
    assert len(set(torch.cdist(centers, BLOB_CENTERS).argmin(1).tolist())) == 4
    c, labels, inertia = kmeans(x, 4, seed=0)
    fitted = KMeans(4, seed=0).fit(x)
    assert torch.equal(c, fitted.centers) and torch.equal(labels, fitted.labels_) and inertia == fitted.inertia_


def test_bad_input_raises_errors_that_name_the_fix():
    x = blobs()
    with pytest.raises(ConfigError, match="lower n_clusters"):
        KMeans(500).fit(x)
    with pytest.raises(AudioInputError, match="NaN"):
        KMeans(2).fit(torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [2.0, 2.0]]))
    with pytest.raises(AudioInputError, match=r"\(N, D\)"):
        KMeans(2).fit(torch.randn(10))
    with pytest.raises(ConfigError, match="init"):
        KMeans(2, init="kmeans").fit(x)
    with pytest.raises(ConfigError, match="fit"):
        KMeans(2).encode(x)
    with pytest.raises(AudioInputError, match="last dimension"):
        KMeans(2).fit(x).encode(torch.randn(5, 3))


@pytest.mark.cuda
@cuda_only
def test_cuda_gives_the_cpu_labels():
    x = blobs(std=2.0)
    cpu = KMeans(4, seed=0).fit(x)
    gpu = KMeans(4, seed=0).fit(x.cuda())
    assert gpu.centers.device.type == "cuda"
    assert torch.equal(gpu.labels_.cpu(), cpu.labels_)
    assert gpu.inertia_ == pytest.approx(cpu.inertia_, rel=1e-4)
