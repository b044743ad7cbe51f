"""ldm-lite: a compact, readable re-implementation of Latent Diffusion Models
(Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", arXiv:2112.10752)."""

__version__ = "0.1.0"
