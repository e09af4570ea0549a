"""Plots put data on the right axes (course_lib.viz)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from course_lib.viz import plot_codebook, plot_history, plot_spectrogram, plot_waveform  # noqa: E402


def test_waveform_and_spectrogram_axes_are_in_seconds_and_hz():
    ax = plot_waveform(torch.zeros(8_000), 16_000)
    assert ax.get_xlim() == (0, 0.5)
    ax = plot_spectrogram(torch.rand(513, 101), 16_000, hop_length=160)
    left, right, bottom, top = ax.get_images()[0].get_extent()
    assert (left, right, bottom, top) == (0, 101 * 160 / 16_000, 0, 8_000)
    ax = plot_spectrogram(torch.rand(64, 10), 16_000, 160, frequency_scale="mel", f_max=8_000)
    labels = [float(t.get_text()) for t in ax.get_yticklabels()]
    assert labels == sorted(labels) and labels[-1] < 8_000


def test_codebook_cells_colour_each_point_by_its_nearest_code():
    codes = np.array([[0.0, 0.0], [10.0, 10.0]])
    points = np.array([[0.0, 1.0], [9.0, 10.0]])
    ax = plot_codebook(points, codes, resolution=20)
    cells = ax.get_images()[0].get_array()
    assert cells[0, 0] == 0 and cells[-1, -1] == 1


def test_history_from_rows_or_columns():
    rows = [{"step": s, "loss": 1.0 / (s + 1), "commitment": 0.1} for s in range(5)]
    ax = plot_history(rows)
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "commitment"]
    assert np.allclose(ax.get_lines()[0].get_xdata(), np.arange(5))
    ax = plot_history({"step": [0, 10], "loss": [2.0, 1.0]}, log_y=True)
    assert ax.get_yscale() == "log"


def test_mel_axis_position_puts_a_band_centre_in_the_middle_of_its_row():
    from course_lib.viz import _hz_to_mel, _mel_to_hz, mel_axis_position

    n_bins, f_max = 64, 8000.0
    centres = np.linspace(_hz_to_mel(0.0), _hz_to_mel(f_max), n_bins + 2)[1:-1]  # the axis' band centres
    for band in (0, 10, 63):
        assert abs(mel_axis_position(_mel_to_hz(centres[band]), n_bins, f_max) - (band + 0.5)) < 1e-9
