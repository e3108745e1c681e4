"""Training data and training of the embedded models (needs the Debian data packages)."""
