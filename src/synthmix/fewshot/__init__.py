"""The few-shot protocol of DA-Fusion (study 4): k real images per class, image-to-image
variants of them, a linear probe per method, and the summary over trials.

Per (k examples per class, trial), as a DVC matrix:

0. ``fewshot_features``: the backbone's features of the real validation and test splits, once.
1. ``fewshot_variants``: the trial's real subset (a per-class permutation seeded by
   (``fewshot.seed``, trial, class), cut at k, so the subsets of one trial are nested) and, per
   method, ``generate.img2img.per_image`` variants of every subset image:
   ``dafusion`` with ``generate.img2img``'s randomized strengths and its leakage control,
   ``real_guidance`` with one strength (``fewshot.real_guidance_strength``) and the class name
   in the prompt (He et al. 2023). Variants are seeded by their source image, so an image in
   several subsets gets the same variants in each. They are DVC outputs: changing only the
   classifier never regenerates them.
2. ``fewshot_train``: a linear probe on a frozen pretrained backbone (DA-Fusion: ResNet-50, Adam
   1e-4, batch 32, 50 epochs of 200 iterations) per method, every image's features computed
   once. Each epoch visits ``fewshot.samples_per_epoch`` samples of the subset; each sample is
   swapped with probability ``fewshot.alpha`` for one of the variants *of that same image*
   (``lrr``), drawn per sample and epoch from a generator seeded by (trial, epoch).
   ``baseline`` never swaps. With ``fewshot.classifier.augment``, every method sees a random
   horizontal flip of each sample (the flipped images' features are computed once too). The
   head of the last epoch is kept: a few-shot learner has no validation split to select on
   (the real validation accuracy is reported, never used).
3. ``fewshot_summarize``: accuracy and mean per-class accuracy (DA-Fusion's metric) on the real
   test split, mean and Student-t interval over trials, per k and method; a plot against k.
"""
