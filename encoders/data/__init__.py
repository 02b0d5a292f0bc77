"""Development and evaluation data: emoji (two vendors), OpenMoji (unseen style), and
Fashion-MNIST. Everything comes from package registries (npm, Debian), never a hub."""
