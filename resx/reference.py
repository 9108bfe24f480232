"""The papers' published numbers, as data, for checking resx's results (cited per entry: He et al. 2015, He et al. 2016, Huang et al. 2016, Veit et al. 2016, Li et al. 2018).

Every error here is a FRACTION in [0, 1] (8.75% is 0.0875), the unit of resx's CSVs; the report and the plots
multiply by 100 when they show percent. Keys that are depths are the number of weighted layers (6n+2 on CIFAR).
All numbers are CIFAR-10 test error unless the name says otherwise.
"""

from __future__ import annotations

# --- He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition" (arXiv 1512.03385) ---------------
# Table 6: CIFAR-10 ResNets (option A shortcuts), 64k iterations, batch 128, as printed; for ResNet-110 that is the
# best of 5 runs (their mean and std below).
HE_TABLE6_TEST_ERROR = {20: 0.0875, 32: 0.0751, 44: 0.0717, 56: 0.0697, 110: 0.0643, 1202: 0.0793}
HE_RESNET110_MEAN_STD = (0.0661, 0.0016)  # ResNet-110 over 5 runs: mean, std
HE_PARAMS_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
HE_FORWARD_MACS_MILLIONS = {20: 40.8, 32: 69.1, 44: 97.4, 56: 125.5, 110: 252.9}  # per 32x32 image
# Fig. 6: deeper plain nets train WORSE (plain-56 above plain-20 all through training); deeper ResNets train better.
# Plain-110 stays above 60% error. ResNet-1202 reaches < 0.1% training error.
HE_PLAIN110_ERROR_ABOVE = 0.60
# ImageNet Table 2, top-1 error (10-crop)
HE_IMAGENET_TOP1_ERROR = {"plain-18": 0.2794, "plain-34": 0.2854, "resnet-18": 0.2788, "resnet-34": 0.2503}
HE_RECIPE = {
    "optimizer": "SGD, momentum 0.9, weight decay 1e-4",
    "batch_size": 128,
    "lr": "0.1, /10 at 32k and 48k iterations, stop at 64k (about 164 epochs)",
    "augmentation": "pad 4, random 32x32 crop, horizontal flip",
    "preprocessing": "per-pixel mean subtracted (resx: per-channel mean and std; padding with the mean colour)",
}

# Public PyTorch reproduction (200 epochs, lr /10 at 100 and 150, all 50k training images).
PUBLIC_REPRO_TEST_ERROR = {20: 0.0827, 32: 0.0737, 44: 0.0690, 56: 0.0661, 110: 0.0632, 1202: 0.0618}
PUBLIC_REPRO_RESNET56_RANGE = (0.069, 0.084)  # over 6 users' runs: about +-0.5 points
# The spread of one run of a recipe about its mean, as the public reproduction's users report for ResNet-56
# (about +-0.5 points); two independent runs then differ by about sqrt(2) times this, and with one seed per net a
# smaller difference says nothing about which net is better (resx.studies.degradation.verdict.depth_effect).
RUN_TO_RUN_SPREAD = 0.005

# --- He et al. 2016, "Identity Mappings in Deep Residual Networks" (arXiv 1603.05027): original -> pre-activation -
PREACT_CIFAR10_TEST_ERROR = {110: (0.0661, 0.0637), 164: (0.0593, 0.0546), 1001: (0.0761, 0.0492)}
PREACT_CIFAR100_TEST_ERROR = {164: (0.2516, 0.2433), 1001: (0.2782, 0.2271)}
# Table 1, shortcut variants of ResNet-110 on CIFAR-10 (median of 5 runs), by resx's shortcut names: the test error,
# or None where the paper says "fail" (test error above 20%). Gate names end in the bias init: -bN is bias -N.
IDENTITY_SHORTCUT_TEST_ERROR = {
    "identity": 0.0661, "scale-0": None, "scale-0.5": None, "frozen-gate-0.5": 0.1235,
    **{f"exclusive-gate-b{n}": None for n in range(6)},  # "fail" for bias init 0 to -5
    "exclusive-gate": 0.0870, "exclusive-gate-b6": 0.0870, "exclusive-gate-b7": 0.0981,
    "shortcut-gate": 0.1286, "shortcut-gate-b0": 0.1286, "shortcut-gate-b6": 0.0691,
    "conv1x1": 0.1222, "dropout-0.5": None,
}
IDENTITY_FAIL_ABOVE = 0.20  # what Table 1's "fail" means
# --- Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks" (arXiv 1611.05431) ---------
# Table 3: ImageNet-1K top-1 error at preserved complexity (about 4.1 GFLOPs for 50 layers), by cardinality C (CxDd:
# 1x64d, 2x40d, 4x24d, 8x14d, 32x4d): more groups, lower error at the same budget
RESNEXT_TABLE3_TOP1_ERROR = {50: {1: 0.239, 2: 0.230, 4: 0.226, 8: 0.223, 32: 0.222},
                             101: {1: 0.220, 2: 0.217, 4: 0.214, 8: 0.213, 32: 0.212}}
RESNEXT_TABLE3_WIDTHS = {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}
# Table 2 (Fig. 4), activation placement, CIFAR-10 test error: {block: {depth: error}} for ResNet-110 and -164
ACTIVATION_PLACEMENT_TEST_ERROR = {
    "original": {110: 0.0661, 164: 0.0593}, "bn-after-add": {110: 0.0817, 164: 0.0650},
    "relu-before-add": {110: 0.0784, 164: 0.0614}, "relu-only-preact": {110: 0.0671, 164: 0.0591},
    "full-preact": {110: 0.0637, 164: 0.0546},
}

# --- Huang et al. 2016, "Deep Networks with Stochastic Depth" (arXiv 1603.09382): constant -> stochastic depth ---
STOCHASTIC_DEPTH_TEST_ERROR = {110: (0.0641, 0.0525), 1202: (0.0667, 0.0491)}
STOCHASTIC_DEPTH_P_LAST = 0.5

# --- Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow Networks" -------
# (arXiv 1605.06431). The net is a pre-activation ResNet-110: 54 blocks; the authors' published outputs.
VEIT_BLOCKS = 54
VEIT_BASELINE_ERROR = 0.0603
VEIT_SINGLE_TYPICAL_RANGE = (0.060, 0.072)  # most single-block deletions (Fig. 3)
VEIT_SINGLE_LARGEST = {1: 0.42, 19: 0.122, 37: 0.121, 11: 0.113}  # block (1-based) -> error
VEIT_DOWNSAMPLING_BLOCKS = (19, 37)  # 1-based
VEIT_STOCHASTIC_DEPTH_BASELINE_ERROR = 0.0513
VEIT_STOCHASTIC_DEPTH_SINGLE_RANGE = (0.051, 0.069)
VEIT_PLAIN_SINGLE_DELETION_ERROR = 0.90  # a VGG-style net drops to chance when any layer is removed
# Fig. 5a: mean error after deleting k random non-downsampling blocks
VEIT_DELETE_K_ERROR = {1: 0.068, 5: 0.105, 10: 0.205, 15: 0.371, 20: 0.590}
# Fig. 5b: mean error after k random swaps of same-shape blocks
VEIT_SWAP_ERROR = {1: 0.097, 5: 0.266, 10: 0.462}
# Fig. 6: paths. Path lengths are Binomial(n, 1/2); the gradient per path falls exponentially with its length;
# almost all of the total gradient comes from paths 5 to 17 blocks long (0.45% of all paths).
VEIT_EFFECTIVE_WINDOW = (5, 17)
VEIT_WINDOW_PATH_FRACTION = 0.0045
VEIT_PATH_LENGTH_CENTRE = 27
VEIT_PATHS_95_PERCENT = (19, 35)  # more than 95% of paths go through 19 to 35 blocks
VEIT_GRADIENT_SAMPLES_PER_K = 1000
VEIT_SHORT_PATH_TRAINING_ERROR = {"23 of 54 blocks per batch": 0.0596, "full net": 0.0610}

# --- Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets" --------------------
# Test error with and without shortcuts (filter-normalised plots: ResNet-56 smooth, no-shortcut net chaotic).
LI_TEST_ERROR = {
    20: {"residual": 0.0737, "plain": 0.0818},
    56: {"residual": 0.0589, "plain": 0.1331},
    110: {"residual": 0.0579, "plain": 0.1644},
}

# --- Speed on an H100 (reference runs outside resx; one run each, images/s, batch 128) ------------------------------
BENCH_H100_IMAGES_PER_SECOND = {
    "ResNet-20": {"dataloader_eager_fp32": "12,400", "eager_gpu_data_bf16": "11,400 to 15,300",
                  "cuda_graph_fp32": "33,800", "cuda_graph_bf16": "62,100"},
    "ResNet-56": {"dataloader_eager_fp32": "5,000", "eager_gpu_data_bf16": "4,900 to 5,100",
                  "cuda_graph_fp32": "12,000", "cuda_graph_bf16": "22,700"},
    "ResNet-110": {"dataloader_eager_fp32": "2,400", "eager_gpu_data_bf16": "2,600 to 2,700",
                   "cuda_graph_fp32": "6,200", "cuda_graph_bf16": "11,600"},
}
BENCH_H100_METHODS = {
    "dataloader_eager_fp32": "DataLoader + PIL transforms, eager fp32",
    "eager_gpu_data_bf16": "eager, data on GPU, bf16 + channels_last",
    "cuda_graph_fp32": "whole step as one CUDA graph, fp32",
    "cuda_graph_bf16": "whole step as one CUDA graph, bf16 + channels_last",
}
