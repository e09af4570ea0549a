"""The instruments of SynthMusic: additive (harmonic) synthesis, an FM bell, a Karplus–Strong plucked
string, and synthesized kick, snare and hi-hat.

Each pitched instrument renders one note as a NumPy array; all randomness comes from the clip's
generator, so a clip is a function of its seed. References: additive synthesis and ADSR envelopes
(any synthesis text); FM synthesis (Chowning 1973); the plucked string (Karplus & Strong 1983, with
the Jaffe & Smith 1983 extensions: fractional delay for tuning, a decay stretch for high notes).

Notebook: notebooks/00_audio_and_data.ipynb (listening to each instrument and its spectrogram).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter, lfilter

from course_lib.data.music_theory import HIHAT, KICK, SNARE
from course_lib.errors import ConfigError

INSTRUMENTS = ("additive", "fm_bell", "plucked_string")
WAVETABLE_SIZE = 4096
FADE_SECONDS = 0.03  # every note ends with a half-cosine fade: no click, no false onset at its end
KS_BLOCK_MIN_PERIOD = 60  # Karplus–Strong: block recursion for long periods, lfilter for short ones


def render_note(
    instrument: str, frequency: float, duration: float, velocity: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One note of ``instrument`` (a name in ``INSTRUMENTS``): ``round(duration · sample_rate)`` samples.

    Long notes ring longer (the bell's and the string's decay times grow with ``duration``), so a
    held melody note stays above the chords struck under it.
    """
    length = max(1, round(duration * sample_rate))
    if instrument == "additive":
        tone = additive(frequency, length, sample_rate)
    elif instrument == "fm_bell":
        tone = fm_bell(frequency, length, sample_rate)
    elif instrument == "plucked_string":
        tone = plucked_string(frequency, length, sample_rate, rng, decay_seconds=max(1.5, 4.0 * duration))
    else:
        raise ConfigError(f"unknown instrument {instrument!r}: choose from {', '.join(INSTRUMENTS)}.")
    return _fade_out(velocity * tone, sample_rate)


def additive(frequency: float, length: int, sample_rate: int, n_harmonics: int = 8) -> np.ndarray:
    """A harmonic tone, sum_k k^-1.2 · sin(2π k f t), read from a wavetable, with an ADSR envelope.

    Harmonics above 0.45 · sample_rate are left out (no aliasing). The table is read with linear
    interpolation: nearest-sample reading would add a noise floor that the onset detector hears.
    """
    n_harmonics = max(1, min(n_harmonics, int(0.45 * sample_rate / frequency)))
    table = _harmonic_table(n_harmonics)  # (WAVETABLE_SIZE + 1,), last sample = first
    position = frequency * WAVETABLE_SIZE / sample_rate * np.arange(length)  # (length,)
    position -= WAVETABLE_SIZE * np.floor(position / WAVETABLE_SIZE)
    index = position.astype(np.int64)
    fraction = position - index
    wave = table[index] + fraction * (table[index + 1] - table[index])
    seconds = length / sample_rate
    # ADSR: 10 ms attack, 100 ms decay to a 0.7 sustain level, release folded into the final fade.
    envelope = np.interp(np.arange(length) / sample_rate, [0.0, 0.01, 0.11, max(seconds, 0.111)], [0.0, 1.0, 0.7, 0.7])
    return wave * envelope


@functools.lru_cache(maxsize=16)
def _harmonic_table(n_harmonics: int) -> np.ndarray:
    phase = 2 * np.pi * np.arange(WAVETABLE_SIZE + 1) / WAVETABLE_SIZE
    k = np.arange(1, n_harmonics + 1)[:, None]  # (H, 1)
    table = (k**-1.2 * np.sin(k * phase)).sum(axis=0)  # (WAVETABLE_SIZE + 1,)
    return table / np.abs(table).max()


def fm_bell(frequency: float, length: int, sample_rate: int, ratio: float = 3.5, index: float = 1.2) -> np.ndarray:
    """Two-operator FM (Chowning 1973): sin(2π f t + I(t) · sin(2π · ratio · f t)).

    The inharmonic modulator ratio gives the metallic partials; the modulation index I(t) decays
    faster than the amplitude, so the bell starts bright and ends close to a sine. With I ≤ 1.2 the
    carrier (Bessel J0) stays the strongest partial, which keeps the pitch recognisable.
    """
    t = (np.arange(length) / sample_rate).astype(np.float32)
    decay = max(0.25, 0.7 * length / sample_rate)  # long notes ring longer
    modulator_hz = ratio * frequency
    if modulator_hz * 2 > 0.45 * sample_rate:  # upper sidebands would alias: a plain decaying sine
        index = 0.0
    # float32 from here: NumPy's float32 sin and exp are several times faster than float64
    modulation = index * np.exp(-t / (0.3 * decay)) * np.sin(_phase(modulator_hz, length, sample_rate))
    attack = np.minimum(1.0, t / 0.003)
    return np.sin(_phase(frequency, length, sample_rate) + modulation) * np.exp(-t / decay) * attack


def _phase(frequency: float, length: int, sample_rate: int) -> np.ndarray:
    """2π f t as float32, wrapped to one cycle in float64 first so no precision is lost."""
    cycles = frequency / sample_rate * np.arange(length)
    cycles -= np.floor(cycles)  # faster than % 1.0
    return (2 * np.pi * cycles).astype(np.float32)


def plucked_string(
    frequency: float, length: int, sample_rate: int, rng: np.random.Generator, decay_seconds: float = 1.5
) -> np.ndarray:
    """Karplus–Strong: one period of excitation circulating in a delay line with a low-pass loop filter.

    The excitation is the string's initial shape, a triangle peaked at a random pluck point (harmonic
    k starts with amplitude ∝ sin(kπβ)/k², so the fundamental leads), plus a little noise. Each
    pass through the loop multiplies by g · L(z) · D(z): L is the two-point average "stretched" by S
    (Jaffe & Smith; S < 0.5 damps high notes less), D a fractional delay that tunes the loop to the
    exact period, and g sets the fundamental's decay to −60 dB in ``decay_seconds``.
    """
    period = sample_rate / frequency
    stretch = 0.5 * min(1.0, period / 64) ** 2  # the full average for periods ≥ 64 samples (250 Hz at 16 kHz)
    omega = 2 * np.pi * frequency / sample_rate
    average_gain = np.abs(1 - stretch + stretch * np.exp(-1j * omega))  # loss per pass at f0
    gain = min(0.99995, 10.0 ** (-3.0 / (decay_seconds * frequency)) / average_gain)  # −60 dB per decay
    # The all-pass is accurate for delays d in [0.1, 1.1): leave it at least 0.1 sample.
    delay = int(np.floor(period - stretch - (0.1 if period < KS_BLOCK_MIN_PERIOD else 0.0)))
    fraction = period - stretch - delay
    pluck_point = rng.uniform(0.1, 0.3)
    shape = np.interp(np.arange(delay) / delay, [0.0, pluck_point, 1.0], [0.0, 1.0, 0.0])
    excitation = shape + 0.2 * rng.uniform(-1.0, 1.0, delay)
    excitation -= excitation.mean()  # no DC: the loop would keep it almost forever
    if period < KS_BLOCK_MIN_PERIOD:
        out = _karplus_strong_allpass(excitation, length, stretch, fraction, gain)
    else:
        out = _karplus_strong_blocks(excitation, length, stretch, fraction, gain)
    return out / max(np.abs(out[: 4 * delay]).max(), 1e-9)


def _karplus_strong_allpass(
    excitation: np.ndarray, length: int, stretch: float, fraction: float, gain: float
) -> np.ndarray:
    """Short periods: the loop as one rational filter for scipy's lfilter (C speed, cost ∝ N · length).

    D is a first-order all-pass (c + z⁻¹) / (1 + c z⁻¹), c = (1 − d) / (1 + d), a delay of d
    samples at low frequencies with no loss at any frequency (linear interpolation would damp high
    notes). Y/X = (1 + c z⁻¹) / ((1 + c z⁻¹) − g z⁻ᴺ ((1 − S) + S z⁻¹)(c + z⁻¹)).
    """
    delay = len(excitation)
    c = (1 - fraction) / (1 + fraction)
    denominator = np.zeros(delay + 3)
    denominator[:2] = [1.0, c]
    denominator[delay:] -= gain * np.array([(1 - stretch) * c, (1 - stretch) + stretch * c, stretch])
    x = np.zeros(length)
    x[: min(delay, length)] = excitation[:length]
    return lfilter([1.0, c], denominator, x)


def _karplus_strong_blocks(
    excitation: np.ndarray, length: int, stretch: float, fraction: float, gain: float
) -> np.ndarray:
    """Long periods: y[n] = x[n] + g · (c0 y[n−N] + c1 y[n−N−1] + c2 y[n−N−2]), N samples at a time.

    Every delay is ≥ N, so a block of N samples depends only on earlier blocks: one NumPy operation
    per period (cost ∝ length / N). D is linear interpolation, whose damping is negligible this low.
    """
    delay = len(excitation)
    taps = gain * np.convolve([1 - stretch, stretch], [1 - fraction, fraction])  # (3,)
    pad = delay + 2  # zeros before the note, so every read of y[n−N−2] is in range
    y = np.zeros(pad + length)
    y[pad : pad + min(delay, length)] = excitation[:length]
    for start in range(pad + delay, pad + length, delay):
        n = min(delay, pad + length - start)
        back = start - delay
        y[start : start + n] = (
            taps[0] * y[back : back + n] + taps[1] * y[back - 1 : back - 1 + n] + taps[2] * y[back - 2 : back - 2 + n]
        )
    return y[pad:]


def render_drum(pitch: int, velocity: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A drum hit by General MIDI number: 36 kick, 38 snare, 42 closed hi-hat."""
    if pitch == KICK:
        return velocity * kick(sample_rate)
    if pitch == SNARE:
        return velocity * snare(sample_rate, rng)
    if pitch == HIHAT:
        return velocity * hihat(sample_rate, rng)
    raise ConfigError(f"no drum sound for General MIDI number {pitch}: use 36 (kick), 38 (snare) or 42 (hi-hat).")


def kick(sample_rate: int, seconds: float = 0.25) -> np.ndarray:
    """A sine whose pitch falls from 150 Hz to 45 Hz in about 30 ms, with a 60 ms amplitude decay."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    f_start, f_end, sweep = 150.0, 45.0, 0.03
    phase = 2 * np.pi * (f_end * t + (f_start - f_end) * sweep * (1 - np.exp(-t / sweep)))  # ∫ f(t) dt
    return _fade_out(np.sin(phase) * np.exp(-t / 0.06), sample_rate)


def snare(sample_rate: int, rng: np.random.Generator, seconds: float = 0.2) -> np.ndarray:
    """Noise (the snares) plus a 180 Hz tone (the drum head), both decaying within about 50 ms."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    noise = rng.uniform(-1.0, 1.0, len(t)) * np.exp(-t / 0.05)
    tone = np.sin(2 * np.pi * 180.0 * t) * np.exp(-t / 0.03)
    return _fade_out(0.5 * noise + 0.5 * tone, sample_rate)


def hihat(sample_rate: int, rng: np.random.Generator, seconds: float = 0.05) -> np.ndarray:
    """Noise through a high-pass filter (above 0.4 · Nyquist), decaying in about 15 ms."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    b, a = _hihat_filter()
    noise = lfilter(b, a, rng.uniform(-1.0, 1.0, len(t)))
    return _fade_out(noise * np.exp(-t / 0.015), sample_rate)


@functools.lru_cache(maxsize=1)
def _hihat_filter() -> tuple[np.ndarray, np.ndarray]:
    return butter(2, 0.4, btype="highpass")


def _fade_out(sound: np.ndarray, sample_rate: int) -> np.ndarray:
    """Multiply the last ``FADE_SECONDS`` of ``sound`` by a half-cosine (in place) and return it."""
    fade = min(len(sound), max(1, round(FADE_SECONDS * sample_rate)))
    sound[len(sound) - fade :] *= _fade_curve(fade)
    return sound


@functools.lru_cache(maxsize=8)
def _fade_curve(length: int) -> np.ndarray:
    return 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, length))
