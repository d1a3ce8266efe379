"""Classifiers: training (``train``), evaluation on the real test split (``evaluate``), extra
real test sets (``crossdata``) and quality control of the synthetic set (``qc``)."""
