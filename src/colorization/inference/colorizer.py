"""The inference pipeline: one :class:`Colorizer` used by the CLI, the Python API, the REST service
and batch jobs.

How an image is colorized
-------------------------
1. The input (PIL image, path, bytes or numpy array; any mode, any size) becomes sRGB, and its full
   resolution lightness ``L`` (Lab, ``[0, 100]``) is computed in horizontal strips so that memory
   stays bounded on large photos. A colour input is treated like a grayscale one: only its ``L``
   is used.
2. ``L`` is resized (antialiased bilinear) to the *working size* (short side ``size`` px, aspect
   kept, long side capped at ``MAX_ASPECT * size``), normalised to ``[-1, 1]`` and reflect-padded
   to a multiple of the network stride. Images of the same working shape are batched.
3. The network predicts normalised ab at the working size; the padding is cropped off.
4. ab is scaled by ``saturation`` and upsampled to full resolution (bilinear), or, with
   ``refine=True``, by a fast guided filter (He & Sun 2015) guided by the full-resolution ``L``.
5. The ORIGINAL full-resolution ``L`` is recombined with the ab; colours outside the sRGB gamut are
   brought inside by reducing their chroma at constant L and hue (a max-chroma table per L and
   hue, finished by bisection), then the result is
   clipped to ``[0, 1]`` and quantised to 8 bits. The output's lightness therefore equals the
   input's up to 8-bit rounding; no detail is lost to the working resolution.

Steps 1 (in strips) and 4-5 live in :mod:`colorization.inference.fullres`, the network behind step 3 in
:mod:`colorization.inference.backends`. All Lab maths goes through :mod:`colorization.color`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from colorization import color, image_io
from colorization.inference.backends import PRECISIONS, Backend, TorchBackend, load_backend, no_hints_reason
from colorization.inference.checkpoint import DEFAULT_WORKING_SIZE
from colorization.inference.fullres import (
    RefineConfig,
    full_res_l,
    gray_to_l,
    pil_gray_levels,
    recombine,
    recombine_array,
)
from colorization.inference.hints import Hint, coerce_hints, hint_map
from colorization.inference.prepared import PreparedImage
from colorization.inference.reference import (
    Reference,
    ReferenceConfig,
    ReferenceMatch,
    check_strength,
    encode_reference,
    load_match_encoder,
    match_reference,
    merge_hint_maps,
)
from colorization.models.hint_map import HINT_CHANNELS

__all__ = [
    "Colorizer",
    "Background",
    "decode_input",
    "known_gray",
    "windows",
    "SATURATION_RANGE",
    "PreparedImage",
    "ImageInput",
    "HintsInput",
    "ReferenceInput",
    "MAX_ASPECT",
    "MAX_WORKING_SIZE",
    "prepare_image",
    "image_to_rgb_array",
    "working_shape",
    # re-exported from their owners, colorization.inference.backends and colorization.inference.fullres
    "Backend",
    "TorchBackend",
    "PRECISIONS",
    "RefineConfig",
    "recombine",
]

ImageInput = Image.Image | str | os.PathLike | bytes | np.ndarray | image_io.LoadedImage
"""What :class:`Colorizer` accepts: a PIL image, a file path, encoded bytes, a numpy array, or an
already opened :class:`colorization.image_io.LoadedImage` (its alpha and 16-bit pixels are used)."""
Background = str | tuple[int, int, int] | None
"""What transparency becomes: None keeps the alpha channel (the output is RGBA where the input has
transparency), a colour (``"white"``, ``"#rrggbb"``, ``(r, g, b)``) composites the input on it."""
HintsInput = Sequence[Hint | Mapping[str, Any] | str] | None
"""Colour hints for one image (:func:`colorization.inference.hints.coerce_hints`); None: automatic."""
ReferenceInput = ImageInput | Reference
"""A colour reference photo: anything :class:`Colorizer` reads, or one already encoded by
:meth:`Colorizer.encode_reference` (encode once to use it for many photos)."""

SATURATION_RANGE: tuple[float, float] = (0.0, 2.0)
"""Allowed chroma multipliers (0 = gray, 1 = as predicted, 2 = doubled): the same rule for the
API, the CLI and the web service."""
MAX_ASPECT = 4
"""The working image's long side is at most ``MAX_ASPECT * size`` (panoramas get a shorter short side)."""
MAX_WORKING_SIZE = 2048
"""Largest accepted working size (short side, px); bounds the network's input."""
_MISSING = object()
T = TypeVar("T")
_REFINE = RefineConfig()
PENDING_PIXELS = 64_000_000
"""Full-resolution pixels prepared ahead at most before a window is run (see :func:`windows`)."""


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Working resolution ``(h, w)`` for an image of ``height x width``.

    The short side becomes ``size`` (up- or down-scaling), the aspect ratio is kept and the long
    side is capped at ``MAX_ASPECT * size``. Both sides are at least 1.
    """
    if not 1 <= size <= MAX_WORKING_SIZE:
        raise ValueError(f"size (working resolution) must be between 1 and {MAX_WORKING_SIZE} px, got {size}")
    scale = size / min(height, width)
    if max(height, width) * scale > MAX_ASPECT * size:
        scale = MAX_ASPECT * size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """Pad ``x`` (C,h,w) at the bottom/right to multiples of ``stride`` (reflect; replicate when
    a side is too short to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x.unsqueeze(0), (0, pw, 0, ph), mode=mode).squeeze(0)

# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _check_pixels(height: int, width: int, max_pixels: int | None, name: str) -> None:
    if height < 1 or width < 1:
        raise image_io.EmptyImageError(f"{name}: image has no pixels ({width}x{height})")
    if max_pixels is not None and height * width > max_pixels:
        raise image_io.ImageTooLargeError(
            f"{name}: {width}x{height} = {height * width:,} pixels exceeds the limit of "
            f"{max_pixels:,} pixels (max_pixels)"
        )


def _array_to_rgb(
    arr: np.ndarray, max_pixels: int | None, background: tuple[int, int, int] | None = image_io.BACKGROUND
) -> tuple[np.ndarray, np.ndarray | None]:
    """numpy image -> ((H,W,3) uint8, or float32 in [0,1] for deeper inputs; the alpha of an
    (H,W,4) array when ``background`` is None (uint8, uint16 for uint16, uint8 for float), else None)."""
    name = f"numpy array {arr.shape} {arr.dtype}"
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise image_io.ImageError(f"{name}: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    _check_pixels(arr.shape[0], arr.shape[1], max_pixels, name)
    if arr.dtype == np.uint8:
        if arr.shape[2] == 3:
            return np.ascontiguousarray(arr), None
        if arr.shape[2] == 4 and background is None:
            return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3])
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise image_io.ImageError(f"{name}: contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise image_io.ImageError(f"{name}: float images must be in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        x = np.clip(x, 0.0, 1.0)
    else:
        raise image_io.ImageError(f"{name}: unsupported dtype (use uint8, uint16 or float in [0, 1])")
    kept = None
    if x.shape[2] == 4 and background is None:
        kept = arr[:, :, 3] if arr.dtype == np.uint16 else np.rint(x[:, :, 3] * 255).astype(np.uint8)
        x = x[:, :, :3]
    elif x.shape[2] == 4:  # composite on the background, like image_io.to_rgb does for RGBA
        alpha = x[:, :, 3:4]
        x = x[:, :, :3] * alpha + np.asarray(background, np.float32) / 255.0 * (1.0 - alpha)
    elif x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x, dtype=np.float32), None if kept is None else np.ascontiguousarray(kept)


def image_to_rgb_array(image: ImageInput, max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported input -> sRGB array ``(H, W, 3)``: uint8, or float32 in ``[0, 1]``.

    PIL images go through :func:`colorization.image_io.to_rgb` (every mode, transparency on white),
    paths and bytes through :func:`colorization.image_io.load_image` (EXIF orientation applied), numpy
    arrays (``HxW``, ``HxWx1/3/4``; uint8, uint16 or float in ``[0, 1]``) are converted directly,
    keeping 16-bit precision.

    Raises:
        colorization.image_io.ImageTooLargeError: more than ``max_pixels`` pixels.
        colorization.image_io.ImageError: unreadable input (the message names it).
        TypeError: an unsupported input type.
    """
    return decode_input(image, max_pixels, image_io.BACKGROUND)[0]


def decode_input(
    image: ImageInput, max_pixels: int | None, background: tuple[int, int, int] | None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(rgb, alpha, bits)``: the sRGB of any supported input as :func:`image_to_rgb_array` gives it,
    the (H, W) alpha (uint8, or uint16 for 16-bit inputs) when ``background`` is None and the input
    has transparency (else composited on ``background``), and 16 for 16-bit inputs (uint16 arrays,
    ``I;16`` images, 16-bit PNG/TIFF files: ``rgb`` is then float32), else 8."""
    if isinstance(image, Image.Image):
        _check_pixels(image.height, image.width, max_pixels, f"PIL image ({image.mode})")
        if background is None and image_io.has_alpha(image):
            rgba = image.convert("RGBA")
            return np.asarray(rgba.convert("RGB")), np.array(rgba.getchannel("A")), 8
        if image.mode.startswith("I;16"):
            gray = np.asarray(image).astype(np.float32) / 65535.0
            return np.repeat(gray[:, :, None], 3, axis=2), None, 16
        return np.asarray(image_io.to_rgb(image, background or image_io.BACKGROUND)), None, 8
    if isinstance(image, np.ndarray):
        rgb, alpha = _array_to_rgb(image, max_pixels, background)
        return rgb, alpha, 16 if image.dtype == np.uint16 else 8
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        src = bytes(image) if isinstance(image, bytearray) else image
        image = image_io.open_image(src, max_pixels=max_pixels, keep_alpha=background is None,
                                    background=background or image_io.BACKGROUND)
    if isinstance(image, image_io.LoadedImage):
        if image.deep is not None:
            return image.deep.astype(np.float32) / 65535.0, image.alpha, 16
        return np.asarray(image.image), image.alpha, 8
    raise TypeError(
        f"cannot colorize a {type(image).__name__}: pass a PIL image, a path, bytes or a numpy array"
    )


GRAY_SOURCE_MODES = ("1", "L", "LA", "La")
"""PIL modes of files whose pixels are gray levels (with or without transparency)."""


def known_gray(loaded: image_io.LoadedImage, background: tuple[int, int, int] | None) -> image_io.LoadedImage:
    """``loaded`` with its image as its ``"L"`` gray levels when they are known without looking at
    every pixel: an 8-bit gray file (:data:`GRAY_SOURCE_MODES`) whose transparency, if any, was
    kept (``alpha``) or composited on the neutral ``background`` it was opened with (None: white);
    ``loaded`` itself otherwise. :func:`prepare_image` then skips its R == G == B check (about 40 ms
    for a 12 MP photo)."""
    bg = background or image_io.BACKGROUND
    neutral = loaded.alpha is not None or bg[0] == bg[1] == bg[2]
    if loaded.deep is None and loaded.source_mode in GRAY_SOURCE_MODES and loaded.image.mode == "RGB" and neutral:
        return dataclasses.replace(loaded, image=loaded.image.getchannel(0))
    return loaded


def prepare_image(
    image: ImageInput,
    size: int = DEFAULT_WORKING_SIZE,
    stride: int = 1,
    max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
    hints: Sequence[Hint | Mapping[str, Any] | str] | None = None,
    background: Background = None,
) -> PreparedImage:
    """Decode/convert ``image`` and build the network input (CPU only; safe in DataLoader workers).

    Args:
        image: see :func:`image_to_rgb_array`.
        size: working short side in pixels. stride: network stride (pad multiple).
        max_pixels: pixel limit (None: unlimited).
        hints: colour points in the input image's pixel coordinates (see
            :func:`colorization.inference.hints.coerce_hints`); None or empty: automatic.
        background: see :data:`Background`; None (default, as in :class:`Colorizer`) keeps the alpha
            channel for the output, a colour composites on it. A :class:`colorization.image_io.LoadedImage`
            was opened with its own choice: its ``alpha`` is kept whatever this says.

    Raises:
        ValueError: a malformed hint, a point outside the image, or a bad ``background``.
    """
    points = coerce_hints(hints)
    bg = image_io.parse_background(background)
    alpha, bits = None, 8
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):  # opened here, as decode_input would
        src = bytes(image) if isinstance(image, bytearray) else image
        image = known_gray(image_io.open_image(src, max_pixels=max_pixels, keep_alpha=bg is None,
                                               background=bg or image_io.BACKGROUND), bg)
    gray = None
    if isinstance(image, image_io.LoadedImage) and image.deep is None:  # its gray levels, when it has them
        pil = image.image
        _check_pixels(pil.height, pil.width, max_pixels, f"image ({image.source_mode})")
        gray = np.asarray(pil) if pil.mode == "L" else pil_gray_levels(pil)
        alpha = image.alpha if gray is not None else None
    elif isinstance(image, Image.Image) and image.mode in ("L", "RGB") and not image_io.has_alpha(image):
        _check_pixels(image.height, image.width, max_pixels, f"PIL image ({image.mode})")
        gray = pil_gray_levels(image)
    if gray is not None:
        # the common case, an 8-bit grayscale image (also stored as RGB): no RGB array
        H, W = gray.shape
        l_full = gray_to_l(gray)
        del gray
    else:
        rgb, alpha, bits = decode_input(image, max_pixels, bg)
        H, W = rgb.shape[:2]
        l_full = full_res_l(rgb)
        del rgb
    h, w = working_shape(H, W, size)
    l_small = F.interpolate(
        l_full[None, None], size=(h, w), mode="bilinear", align_corners=False, antialias=(h < H or w < W)
    )[0]
    l_norm = color.normalize_l(l_small)
    l_work = _pad_to_stride(l_norm, stride).contiguous()
    hint_work = None
    if points:
        hmap = hint_map(points, (W, H), l_norm[None])[0]
        hint_work = F.pad(hmap, (0, l_work.shape[-1] - w, 0, l_work.shape[-2] - h)).contiguous()
    return PreparedImage(l_full=l_full, l_work=l_work, work_hw=(h, w), hints=hint_work, alpha=alpha, bits=bits)


# --------------------------------------------------------------------------------------------
# Colorizer
# --------------------------------------------------------------------------------------------

def windows(items: Iterable[T], batch_size: int, pixels: Callable[[T], int]) -> Iterator[list[T]]:
    """Group a stream of prepared images into windows for :meth:`Colorizer.predict`.

    A window closes at ``4 * batch_size`` items or once its items' full-resolution pixels
    (``pixels(item)``) reach :data:`PENDING_PIXELS`, so memory stays bounded while images of equal
    working shape within a window share network calls. The last, partial window is yielded too.
    """
    window: list[T] = []
    total = 0
    for item in items:
        window.append(item)
        total += pixels(item)
        if len(window) >= 4 * batch_size or total >= PENDING_PIXELS:
            yield window
            window, total = [], 0
    if window:
        yield window


class Colorizer:
    """Colorize photos of any size and mode with an exported model.

    >>> colorizer = Colorizer.from_pretrained()           # the shipped default model
    >>> rgb = colorizer("old_photo.jpg", saturation=1.1)  # PIL RGB, same size as the input

    Args:
        backend: the network (:class:`TorchBackend` or :class:`colorization.inference.onnx_export.OnnxBackend`).
        size: working short side in px; None: the model's ``working_size`` or
            :data:`colorization.inference.checkpoint.DEFAULT_WORKING_SIZE`.
        max_pixels: inputs with more pixels raise :class:`colorization.image_io.ImageTooLargeError`
            (None: unlimited).
        refine: default for the edge-aware ab upsampling (guided filter); off by default because
            it did not reduce colour error on our measurement (docs/colorize.md).
        refine_config: its radius/eps.
        reference_config: how reference photos are matched
            (:class:`colorization.inference.reference.ReferenceConfig`).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        size: int | None = None,
        max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
        refine: bool = False,
        refine_config: RefineConfig = _REFINE,
        reference_config: ReferenceConfig | None = None,
    ) -> None:
        self.backend = backend
        self.size = int(size or backend.working_size or DEFAULT_WORKING_SIZE)
        working_shape(self.size, self.size, self.size)  # validates the range
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
        self.max_pixels = max_pixels
        self.refine = bool(refine)
        self.refine_config = refine_config
        self.reference_config = reference_config or ReferenceConfig()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        backend: str = "torch",
        size: int | None = None,
        max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
        refine: bool = False,
        *,
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        threads: int | None = None,
    ) -> Colorizer:
        """Load an exported model.

        Args:
            path: an exported model folder (``model.safetensors`` + ``config.json``), ``None`` or
                ``"default"`` for the model shipped inside the package (no download). For
                ``backend="onnx"``: a ``.onnx`` file, or a folder holding one (``model.onnx``).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available (torch) /
                CPU (onnx).
            backend: ``"torch"`` (weights loaded strictly with safetensors) or ``"onnx"``
                (ONNX Runtime only; torch is used for the Lab pre/post-processing, not the network).
            size: working short side in px; None: the model's ``working_size`` (config.json),
                else 256.
            max_pixels: pixel limit for inputs (None: unlimited).
            refine: use the guided-filter ab upsampling by default.
            precision: torch backend: ``"auto"`` (bf16 autocast on CUDA when supported, fp32 on
                CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"``. The onnx backend runs fp32 only.
            channels_last: torch backend: NHWC network and input; None: on for CUDA.
            compile: torch backend: ``torch.compile`` the network (dynamic shapes).
            threads: CPU threads: torch's intra-op threads (process-wide, ``torch.set_num_threads``:
                the network and the Lab maths) and, with ``backend="onnx"``, ONNX Runtime's; None
                leaves the defaults (one per usable core).

        Raises:
            ValueError: an unknown ``backend`` or ``precision``, ``threads`` below 1, or a torch-only option
                (bf16/fp16, ``channels_last=True``, ``compile=True``) with ``backend="onnx"``.
            FileNotFoundError: no model at ``path`` (see :func:`colorization.inference.backends.load_backend`).
        """
        be = load_backend(
            path, device, backend, precision=precision, channels_last=channels_last, compile=compile, threads=threads
        )
        return cls(be, size=size, max_pixels=max_pixels, refine=refine)

    @property
    def device(self) -> torch.device:
        """Where the network and the full-resolution post-processing run."""
        return self.backend.device

    @property
    def stride(self) -> int:
        """The network stride (working images are padded to multiples of it)."""
        return self.backend.stride

    @property
    def model_name(self) -> str:
        """Registry name of the model (from its config.json), or the backend name."""
        return str(self.backend.config.get("model") or self.backend.name)

    def __repr__(self) -> str:
        return f"Colorizer({self.backend!r}, size={self.size}, refine={self.refine})"

    # -- the pipeline --------------------------------------------------------------------------

    @property
    def accepts_hints(self) -> bool:
        """Whether the model takes colour hints (``hints=`` of :meth:`__call__`)."""
        return bool(getattr(self.backend, "accepts_hints", False))

    @property
    def no_hints_reason(self) -> str | None:
        """Why the model takes no colour hints and what to do (None when it takes them): the message
        of every refusal of hints (:func:`colorization.inference.backends.no_hints_reason`)."""
        return None if self.accepts_hints else no_hints_reason(self.backend, self.model_name)

    def prepare(self, image: ImageInput, size: int | None = None, hints: HintsInput = None,
                background: Background = None, reference: ReferenceInput | None = None,
                reference_strength: float = 1.0) -> PreparedImage:
        """Step 1-2 for one image (see :func:`prepare_image`); ``background`` None (default) keeps
        the alpha channel for :meth:`finish`; ``reference``: see :meth:`add_reference`.

        Raises:
            ValueError: hints or a reference for a model that does not take hints, malformed hints, a
                bad ``background``, a bad reference (see :meth:`encode_reference`).
        """
        if hints and not self.accepts_hints:
            raise ValueError(self.no_hints_reason)
        ref = None if reference is None else self.encode_reference(reference)  # errors before decoding
        prep = prepare_image(image, int(size or self.size), self.stride, self.max_pixels, hints, background)
        if ref is not None:
            self.add_reference(prep, ref, reference_strength)
        return prep

    # -- reference photos (colorization.inference.reference) -------------------------------------

    def encode_reference(self, image: ReferenceInput, name: str | None = None) -> Reference:
        """A colour reference photo (anything :meth:`__call__` reads; transparency on white) read and
        encoded for matching, once for any number of photos; a ``Reference`` is returned as is.
        ``name``: how errors name it (default: the path, else "reference").

        Raises:
            ValueError: a model without hint input, or ``GrayReferenceError``: the photo has no colour;
                and the image errors of :meth:`__call__` (unreadable, over ``max_pixels``).
        """
        if isinstance(image, Reference):
            return image
        if not self.accepts_hints:
            raise ValueError(f"{self.no_hints_reason}; a reference photo colours through colour hints")
        label = name or (str(image) if isinstance(image, (str, os.PathLike)) else "reference")
        rgb = decode_input(image, self.max_pixels, image_io.BACKGROUND)[0]
        return encode_reference(rgb, load_match_encoder(str(self.device)), self.reference_config, label)

    def match_reference(self, prepared: PreparedImage, reference: ReferenceInput,
                        strength: float = 1.0) -> ReferenceMatch:
        """``prepared``'s full-resolution lightness matched against ``reference`` (``match_reference``)."""
        ref = self.encode_reference(reference)
        return match_reference(ref, prepared.l_full, load_match_encoder(str(self.device)), strength)

    def add_reference(self, prepared: PreparedImage, reference: ReferenceInput,
                      strength: float = 1.0) -> ReferenceMatch | None:
        """Add the colours of ``prepared``'s confident matches in ``reference`` to its hints (the
        user's own win where both fall; nothing when the reference does not fit) and return the
        match. ``strength`` in ``STRENGTH_RANGE`` moves the match threshold (0: ignored, None)."""
        strength = check_strength(strength)
        if strength == 0.0:
            return None
        ref = self.encode_reference(reference)
        match = self.match_reference(prepared, ref, strength)
        if match.fits:
            (h, w), (hp, wp) = prepared.work_hw, prepared.l_work.shape[-2:]
            hmap = F.pad(match.hint_map((h, w), ref.config.radius), (0, wp - w, 0, hp - h))
            prepared.hints = merge_hint_maps(prepared.hints, hmap.contiguous())
        return match

    def predict(self, prepared: Sequence[PreparedImage], batch_size: int = 8) -> list[Tensor]:
        """Run the network on prepared images, batching those of equal working shape.

        Returns:
            One float32 ab_norm tensor (2, h, w) per image (padding cropped), in input order,
            on ``self.device``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(tuple(p.l_work.shape), []).append(i)
        results: list[Tensor | None] = [None] * len(prepared)
        for idx in groups.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                batch = torch.stack([prepared[i].l_work for i in chunk])
                hint_batch = None
                if any(prepared[i].hints is not None for i in chunk):
                    zeros = torch.zeros(HINT_CHANNELS, *batch.shape[2:])
                    hint_batch = torch.stack(
                        [zeros if prepared[i].hints is None else prepared[i].hints for i in chunk]  # type: ignore[misc]
                    )
                ab = self.backend(batch) if hint_batch is None else self.backend(batch, hint_batch)
                if ab.shape[0] != len(chunk) or ab.shape[1] != 2 or ab.shape[2:] != batch.shape[2:]:
                    raise RuntimeError(
                        f"the model returned {tuple(ab.shape)} for input {tuple(batch.shape)}; "
                        "expected (B, 2, H, W)"
                    )
                for j, i in enumerate(chunk):
                    h, w = prepared[i].work_hw
                    results[i] = ab[j, :, :h, :w]
        return results  # type: ignore[return-value]

    def finish(
        self,
        prepared: PreparedImage,
        ab_norm: Tensor,
        saturation: float = 1.0,
        refine: bool | None = None,
    ) -> Image.Image:
        """Steps 4-5: upsample ``ab_norm`` (2,h,w) and recombine with the full-resolution L.

        Returns an 8-bit PIL image: ``"RGBA"`` with the kept alpha (``prepared.alpha``), else ``"RGB"``.
        """
        return Image.fromarray(self.finish_array(prepared, ab_norm, saturation, refine, bits=8))

    def finish_array(
        self,
        prepared: PreparedImage,
        ab_norm: Tensor,
        saturation: float = 1.0,
        refine: bool | None = None,
        bits: int | None = None,
    ) -> np.ndarray:
        """:meth:`finish` as an (H, W, 3) RGB or (H, W, 4) RGBA (straight alpha) array of ``bits``
        per channel: uint8 for 8, uint16 for 16; None: the input's (``prepared.bits``)."""
        saturation = _check_saturation(saturation)
        use_refine = self.refine if refine is None else refine
        bits = int(bits or prepared.bits)
        rgb = recombine_array(
            prepared, ab_norm, saturation, self.refine_config if use_refine else None, self.device, bits
        )
        alpha = prepared.alpha
        if alpha is None:
            return rgb
        if alpha.dtype != rgb.dtype:  # 8-bit alpha to 16 bits (x 257) or 16-bit to 8 (nearest level)
            alpha = (alpha.astype(np.uint16) * 257 if bits == 16 else np.rint(alpha / 257.0)).astype(rgb.dtype)
        return np.concatenate([rgb, alpha[:, :, None]], axis=2)

    def __call__(
        self,
        image: ImageInput,
        size: int | None = None,
        saturation: float = 1.0,
        refine: bool | None = None,
        hints: HintsInput = None,
        background: Background = None,
        reference: ReferenceInput | None = None,
        reference_strength: float = 1.0,
    ) -> Image.Image:
        """Colorize one image.

        Args:
            image: PIL image (any mode), path, encoded bytes, or numpy array (HxW or HxWxC with
                C in 1/3/4; uint8, uint16, or float in ``[0, 1]``). Colour inputs lose their colour.
            size: working short side (px) for this call; None: ``self.size``.
            saturation: chroma multiplier (0: gray, 1: as predicted, >1: more colourful).
            refine: guided-filter ab upsampling for this call; None: ``self.refine``.
            hints: colour points ``[Hint(x, y, "#c0392b"), ...]`` in the input's pixel coordinates
                (``{"x", "y", "color"}`` dicts and ``"X,Y,#rrggbb"`` strings work too); each colour
                is taken at its pixel's own lightness. Needs a hint-aware model
                (:attr:`accepts_hints`).
            background: None (default): an input with transparency keeps its alpha (colorized from
                its straight colour; the output is RGBA); a colour (``"white"``, ``"#rrggbb"``,
                ``(r, g, b)``) composites the input on it first (the output is RGB).
            reference: a colour photo of the same scene or subject (any framing or size), or one
                from :meth:`encode_reference`: its colours where the photo matches it with
                confidence, automatic ones elsewhere (and wholly when it does not fit).
            reference_strength: ``[0, 2]``: lower keeps only surer matches, higher takes more, 0 none.

        Returns:
            8-bit RGB PIL image (RGBA for a transparent input without ``background``) with the
            input's width and height.

        Raises:
            colorization.image_io.ImageTooLargeError: the input has more than ``max_pixels`` pixels.
            colorization.image_io.ImageError: the input cannot be read.
            ValueError: a bad ``saturation`` or ``background``, a malformed hint, a point outside the
                image, or hints for a model without hint input; a bad reference (see
                :meth:`encode_reference`, which also raises the image errors above for it).
        """
        saturation = _check_saturation(saturation)
        prep = self.prepare(image, size, hints, background, reference, reference_strength)
        (ab,) = self.predict([prep], batch_size=1)
        return self.finish(prep, ab, saturation, refine)

    def colorize_iter(
        self,
        images: Iterable[ImageInput],
        batch_size: int = 8,
        size: int | None = None,
        saturation: float = 1.0,
        refine: bool | None = None,
        hints: Iterable[HintsInput] | None = None,
        background: Background = None,
        reference: ReferenceInput | None = None,
        reference_strength: float = 1.0,
    ) -> Iterator[Image.Image]:
        """Colorize a stream of images, yielding results in input order.

        Images are prepared in windows of up to ``4 * batch_size`` (fewer for very large photos);
        within a window images of the same working shape share network calls of up to
        ``batch_size``. ``hints``, when given, holds one entry (a list of points or None) per image.
        ``background`` as for :meth:`__call__`; ``reference`` (one for every image, read and encoded
        once) and ``reference_strength`` too.
        """
        saturation = _check_saturation(saturation)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_strength(reference_strength)
        ref = None if reference is None else self.encode_reference(reference)
        per_image: Iterator[Any] = iter(hints) if hints is not None else itertools.repeat(None)

        def prepared() -> Iterator[PreparedImage]:
            for image in images:
                points = next(per_image, _MISSING)
                if points is _MISSING:
                    raise ValueError("hints ran out before the images: give one entry (points or None) per image")
                yield self.prepare(image, size, points, background, ref, reference_strength)

        for window in windows(prepared(), batch_size, lambda prep: prep.l_full.numel()):
            for prep, ab in zip(window, self.predict(window, batch_size)):
                yield self.finish(prep, ab, saturation, refine)

    def colorize_batch(
        self,
        images: Sequence[ImageInput],
        batch_size: int = 8,
        size: int | None = None,
        saturation: float = 1.0,
        refine: bool | None = None,
        hints: Sequence[HintsInput] | None = None,
        background: Background = None,
        reference: ReferenceInput | None = None,
        reference_strength: float = 1.0,
    ) -> list[Image.Image]:
        """Colorize several images (any sizes); same results as calling the colorizer on each.

        Images whose working shape is equal are batched into one network call of up to
        ``batch_size``. ``hints``: None, or one entry (points or None) per image. ``background``,
        ``reference`` (one for all) and ``reference_strength`` as for :meth:`__call__`. Returns PIL
        images (RGB, or RGBA with kept alpha) in input order.
        """
        if hints is not None and len(hints) != len(images):
            raise ValueError(f"hints needs one entry per image: {len(hints)} for {len(images)} images")
        return list(self.colorize_iter(images, batch_size, size, saturation, refine, hints, background,
                                       reference, reference_strength))


def _check_saturation(saturation: float) -> float:
    s = float(saturation)
    lo, hi = SATURATION_RANGE
    if not math.isfinite(s) or not lo <= s <= hi:
        raise ValueError(f"saturation must be a number in [{lo:g}, {hi:g}], got {saturation!r}")
    return s
