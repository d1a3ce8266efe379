"""Real-time segmentation networks of the source study in plain PyTorch: BiSeNet V2
(:mod:`.bisenetv2`) and PP-LiteSeg T / B on STDC backbones (:mod:`.ppliteseg`).

Shared contract (what :mod:`synthmix.segmentation.train` relies on): in training mode
``forward`` returns ``(main_logits, [aux_logits, ...])``, every map at the input size; in
eval mode only the main logits. Auxiliary heads exist in both modes (one state dict for
training and inference) but run only in training. Inputs of any size work: they are padded
to a multiple of the network's output stride and the logits cropped back.
"""
