"""The segmentation branch (study 5): labelled image/mask pairs, a DDPM over label maps,
label post-processing, a SPADE label-to-image GAN, replacement mixes, and segmentation networks
(BiSeNet V2, PP-LiteSeg, or segmentation-models-pytorch ones) scored by mIoU on the real test split.

Modules: :mod:`.data` (pair manifests, mask decoding, folder pairs), :mod:`.scenes` (the offline
Fashion-MNIST scene set), :mod:`.label_ddpm`, :mod:`.postprocess`, :mod:`.spade`,
:mod:`.train`, :mod:`.models` (the network registry), :mod:`.networks` and :mod:`.metrics`. Importing the package imports none of them (they load torch).
"""
