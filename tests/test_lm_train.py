"""The training recipes on synthetic tokens: every stage's batches, loss, evaluation, and a float16 save/load round trip."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.lm.data import TokenData, random_batches
from course_lib.lm.evaluation import evaluate_lm, unigram_nll
from course_lib.lm.pretrained import load_lm
from course_lib.lm.recipes import fit_lm, lm_config, recipe, sequence_layout, stage_batch
from course_lib.lm.transformer import TokenLM
from course_lib.train import save_weights

K, FRAMES, SEMANTIC, DIM = 16, 20, 10, 6


def patterned_tokens(n: int, seed: int) -> TokenData:
    """Codes that follow a rule (level q steps by q + 1 per frame): learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(K, (n, 1, 1), generator=g)  # (n, 1, 1)
    steps = torch.arange(4).view(1, 4, 1) + 1  # (1, 4, 1)
    codes = (start + steps * torch.arange(FRAMES)) % K  # (n, 4, FRAMES)
    semantic = (start[:, 0] + torch.arange(SEMANTIC)) % 5  # (n, SEMANTIC)
    embeddings = torch.nn.functional.one_hot(start[:, 0, 0] % DIM, DIM).float()  # (n, DIM)
    return TokenData(
        codes, semantic, embeddings, {"instrument": start[:, 0, 0] % 3}, ["a clip"] * n, list(range(n)), seed
    )


@pytest.mark.parametrize("stage", ["delay", "semantic", "coarse", "fine"])
def test_each_stage_learns_its_sequences_and_beats_the_unigram_baseline(stage):
    plan = recipe(stage, "tiny", steps=200, batch_size=8, lr=5e-3, warmup_steps=10, chunk_frames=10, n_semantic=5,
                  model={"d_model": 32, "n_layers": 2, "n_heads": 2})  # fmt: skip
    layout = sequence_layout(plan, codebook_size=K)
    train, validation = patterned_tokens(64, 0), patterned_tokens(16, 1)
    batch = stage_batch(plan, layout, train)(torch.arange(4), torch.Generator().manual_seed(0))
    assert batch["tokens"].shape[-1] == batch["mask"].shape[-1] and bool(batch["mask"].any())
    assert ("condition" in batch) == (stage in ("semantic", "coarse"))
    torch.manual_seed(0)
    model = TokenLM(lm_config(plan, layout, "tiny", DIM, FRAMES, SEMANTIC))
    assert model.config.max_seq_len >= batch["tokens"].shape[-1]
    history = fit_lm(model, plan, layout, train, progress=False, log_every=10)
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    figures = evaluate_lm(model, plan, layout, validation, train)
    assert figures["validation_nll"] < figures["unigram_nll"] - 0.5, figures
    if stage in ("semantic", "coarse"):
        assert "validation_nll_null_condition" in figures


def test_batches_depend_only_on_the_step():
    plan = recipe("fine", "tiny", chunk_frames=10, batch_size=4)
    make = stage_batch(plan, sequence_layout(plan, K), patterned_tokens(32, 0))
    batches = random_batches(32, 4, make, seed=3)
    assert torch.equal(batches(5)["tokens"], batches(5)["tokens"])
    assert not torch.equal(batches(5)["tokens"], batches(6)["tokens"])


def test_unigram_baseline_by_hand():
    train = torch.tensor([[[0, 0, 0, 1]]])  # counts 3, 1 (+1 smoothing over V = 2): p = 4/6, 2/6
    value = unigram_nll(train, torch.tensor([[[0, 1]]]), 2)
    assert value == pytest.approx(-(math.log(4 / 6) + math.log(2 / 6)) / 2)


def test_float16_weights_load_back_into_float32(tmp_path):
    plan = recipe("coarse", "tiny", n_semantic=5, model={"d_model": 32, "n_layers": 1, "n_heads": 2})
    layout = sequence_layout(plan, K)
    model = TokenLM(lm_config(plan, layout, "tiny", DIM, FRAMES, SEMANTIC)).eval()
    import dataclasses

    metadata = {"layout": {"name": type(layout).__name__, **dataclasses.asdict(layout)}}
    save_weights(tmp_path / "lm.safetensors", model.half(), metadata)
    loaded = load_lm(tmp_path / "lm.safetensors", "cpu")
    assert loaded.layout == layout and next(loaded.model.parameters()).dtype == torch.float32
    tokens = layout.build(torch.zeros(2, SEMANTIC, dtype=torch.long), torch.zeros(2, 2, FRAMES, dtype=torch.long))[0]
    assert torch.allclose(
        loaded.model(tokens, torch.ones(2, DIM)), model.float()(tokens, torch.ones(2, DIM)), atol=1e-5
    )


def test_the_commands_train_and_write_loadable_files(tmp_path, monkeypatch, capsys):
    """tokenizer → delay → coarse with stand-in codec and embedding, a few steps each, on 8 clips."""
    from lm_stand_ins import StandInCodec, StandInEmbedding

    import course_lib.joint_embedding
    import course_lib.lm.train as train_module
    from course_lib.lm.pretrained import load_semantic_tokenizer

    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    embedding = StandInEmbedding()
    monkeypatch.setattr(course_lib.joint_embedding, "load_tiny_joint_embedding", lambda device=None: embedding)
    tokenizer_file = tmp_path / "kmeans.safetensors"

    def stand_ins(device, needs_codec, needs_embedding, tokenizer_path, codec_path=None, embedding_path=None):
        return StandInCodec() if needs_codec else None, embedding, load_semantic_tokenizer(tokenizer_path, embedding)

    monkeypatch.setattr(train_module, "_models", stand_ins)
    import course_lib.lm.recipes as recipes

    monkeypatch.setattr(
        recipes, "TINY", {**recipes.TINY, "tokenizer": {"steps": 0, "tokenizer_clips": 16, "n_semantic": 8}}
    )
    train_module.main(["--stage", "tokenizer", "--out", str(tokenizer_file)])
    common = ["--steps", "3", "--clips", "8", "--validation-clips", "4", "--tokenizer", str(tokenizer_file)]
    for stage in ("delay", "coarse"):
        out = tmp_path / f"{stage}.safetensors"
        monkeypatch.setattr(recipes, "TINY", {**recipes.TINY, stage: {**recipes.TINY[stage], "n_semantic": 8}})
        metadata = train_module.main(["--stage", stage, "--out", str(out), *common])
        assert metadata["command"].startswith(f"python -m course_lib.lm.train --stage {stage}")
        loaded = load_lm(out, "cpu")
        assert loaded.metadata["recipe"]["steps"] == 3 and loaded.metadata["codec_fingerprint"] == "stand-in-codec"
        assert loaded.model.config.condition_dim == (6 if stage == "coarse" else 0)
    assert "null condition" in capsys.readouterr().out  # the coarse stage reports what the condition is worth
    assert len(list((tmp_path / "data" / "lm_tokens").iterdir())) == 2  # training and validation tokens, shared


def test_a_file_made_with_another_joint_embedding_is_refused():
    from lm_stand_ins import StandInEmbedding

    from course_lib.errors import CheckpointError
    from course_lib.lm.data import weights_fingerprint
    from course_lib.lm.pretrained import check_embedding

    made_with, other = StandInEmbedding(), StandInEmbedding()
    torch.nn.init.zeros_(other.projection.weight)
    metadata = {
        "embedding_fingerprint": weights_fingerprint(made_with),
        "command": "python -m course_lib.lm.train --stage coarse",
    }
    check_embedding(metadata, made_with, "coarse stage")  # the same weights: fine
    with pytest.raises(CheckpointError, match="retrain it with `python -m course_lib.lm.train --stage coarse`"):
        check_embedding(metadata, other, "coarse stage")
