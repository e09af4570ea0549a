"""Measures of generated and reconstructed audio: one definition of each, used by every notebook and benchmark.

- ``reconstruction``: waveform SNR, SI-SDR, spectral convergence, the log-mel and multi-scale mel
  distances, the real-time factor (codecs and VQ-VAEs, notebooks 01-04).
- ``frechet``: the Fréchet distance between Gaussians, Fréchet Audio Distance and its sample-size
  correction FAD∞ (notebooks 06, 08).
- ``attributes``: a classifier of SynthMusic's attributes, the Inception Score and caption adherence
  (notebooks 06, 08).
- ``control_adherence``: Music ControlNet's melody accuracy, dynamics correlation and beat F1
  (notebook 09).
"""
