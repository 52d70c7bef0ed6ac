"""Application drop kinds: what runs when a drop's inputs are ready."""
