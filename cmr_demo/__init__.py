"""cmr_demo: supervised cross-modal retrieval on a frozen CLIP (a re-implementation of CLIP4CMR)."""
__version__ = "0.2.0"
