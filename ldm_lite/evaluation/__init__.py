"""Evaluation networks the project trains itself (Inception, LPIPS and CLIP weights cannot be had
offline) and the metrics computed on them: FID, KID and precision/recall on the feature net's
features, CLIP score and R-precision on the contrastive model, and inpainting metrics with
classical baselines, and samplers' distance to the ODE solution. `bench/quality.py` puts them together per model kind."""
from ldm_lite.evaluation.contrastive import (ContrastiveModel, MiniLMSentenceEncoder, clip_score, info_nce_loss,
                                            load_contrastive_model, r_precision)
from ldm_lite.evaluation.distribution_metrics import fid, frechet_distance, gaussian_statistics, kid, precision_recall
from ldm_lite.evaluation.feature_net import FEATURE_CLASSES, FeatureNet, load_feature_net
from ldm_lite.evaluation.inpainting_metrics import (BASELINES, feature_distance, hole_psnr, hole_ssim, inpainting_scores,
                                                    mean_colour_fill, opencv_inpaint)
from ldm_lite.evaluation.solver_error import per_sample_rmse, solver_errors

__all__ = [
    "ContrastiveModel", "MiniLMSentenceEncoder", "clip_score", "info_nce_loss", "load_contrastive_model", "r_precision",
    "fid", "frechet_distance", "gaussian_statistics", "kid", "precision_recall",
    "FEATURE_CLASSES", "FeatureNet", "load_feature_net",
    "BASELINES", "feature_distance", "hole_psnr", "hole_ssim", "inpainting_scores", "mean_colour_fill", "opencv_inpaint",
    "per_sample_rmse", "solver_errors",
]
