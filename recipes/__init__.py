"""Recipes that assemble, train, decode and export skipseq models."""
