"""Datasets (embedded offline data and readers for the original datasets) and the data module."""
from ldm_lite.data.clipart import CATEGORIES as CLIPART_CATEGORIES, ClipartDataset, build_clipart_cache
from ldm_lite.data.datamodule import DataModuleFromConfig
from ldm_lite.data.emoji import CATEGORIES as EMOJI_CATEGORIES, EmojiDataset, build_emoji_cache
from ldm_lite.data.folder import ImageFolderDataset, ImagePathsDataset
from ldm_lite.data.masks import InpaintingDataset, apply_mask, random_box_mask, random_mask, random_stroke_mask
from ldm_lite.data.mixture import MixtureDataset
from ldm_lite.data.mnist import FashionMNISTDataset, MNISTDataset
from ldm_lite.data.original import LSUN, FacesHQ, ImageNet
from ldm_lite.data.photos import PhotosDataset
from ldm_lite.data.shapes import ShapesDataset, judge_shapes, render_shape, shape_caption, shapes_match

__all__ = [
    "CLIPART_CATEGORIES", "ClipartDataset", "build_clipart_cache", "DataModuleFromConfig", "EMOJI_CATEGORIES", "EmojiDataset", "build_emoji_cache", "ImageFolderDataset",
    "ImagePathsDataset", "InpaintingDataset", "apply_mask", "random_box_mask", "random_mask", "random_stroke_mask",
    "FashionMNISTDataset", "MixtureDataset", "MNISTDataset", "LSUN", "FacesHQ", "ImageNet", "PhotosDataset", "ShapesDataset",
    "judge_shapes", "render_shape", "shape_caption", "shapes_match",
]
