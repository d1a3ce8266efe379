"""Fidelity of the synthetic set: FID/KID/precision-recall/IS (``fidelity``) and the offline Inception weights (``inception``)."""
