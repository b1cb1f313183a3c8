"""Data builders: annotated clips → audio interventions → preference pairs and SFT samples → recipe mixtures."""
