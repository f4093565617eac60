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

Steps 1-2 live in :mod:`colorization.inference.inputs` (step 1's strips and steps 4-5 in
:mod:`colorization.inference.fullres`), the network behind step 3 in
:mod:`colorization.inference.backends`. All Lab maths goes through :mod:`colorization.color`.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from colorization import image_io
from colorization.inference.backends import PRECISIONS, Backend, TorchBackend, load_backend, no_hints_reason
from colorization.inference.checkpoint import DEFAULT_WORKING_SIZE
from colorization.inference.fullres import (
    RefineConfig,
    recombine,
    recombine_array,
)
from colorization.inference.inputs import (
    MAX_ASPECT,
    MAX_WORKING_SIZE,
    Background,
    HintsInput,
    ImageInput,
    decode_input,
    image_to_rgb_array,
    known_gray,
    prepare_image,
    windows,
    working_shape,
)
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

ReferenceInput = ImageInput | Reference
"""A colour reference photo: anything :class:`Colorizer` reads, or one already encoded by
:meth:`Colorizer.encode_reference` (encode once to use it for many photos)."""

SATURATION_RANGE: tuple[float, float] = (0.0, 2.0)
"""Allowed chroma multipliers (0 = gray, 1 = as predicted, 2 = doubled): the same rule for the
API, the CLI and the web service."""
_MISSING = object()
_REFINE = RefineConfig()


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
