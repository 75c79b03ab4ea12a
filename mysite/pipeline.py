"""One request's CV work, from the image's bytes to its answer: plan, check, decode, run, draw.

Everything here depends on the client's bytes and nothing here knows Flask or the server, so
it runs where a bad image can cost only its own process (``mysite/server/pool.py``): the web
side reads the request into a ``Job`` and turns the ``Outcome`` into a response.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, SupportsIndex

from mysite.errors import ApiError, TooLarge
from mysite.vision import budget
from mysite.vision.budget import Budget, decode_memory
from mysite.vision.decode import Decoded, Header, decode_image, encode, read_header
from mysite.vision.draw import draw_detections, thumbnail
from mysite.vision.fastpath import ScanPlan
from mysite.vision.shapes import Rescaling, WholeImage, clip

Model = WholeImage | Rescaling[Any]

# Endpoint outputs whose result is a list of detections: they can be drawn on the upload (output=image).
DETECTIONS = frozenset({"boxes", "deepstack"})
# Work is counted in cascade windows; decoding and the DNN models' resizing cost about a tenth of that per pixel.
DECODE_WORK = 8


@dataclass(frozen=True)
class AnswerFormat:
    """What the client asked to get back, read once per request."""

    output: str  # "json", "image", "base64", or "text" for the plain-text answers
    fmt: str  # "jpeg" or "png": how a picture is encoded

    @property
    def picture(self) -> bool:
        """Whether the answer is a picture (as it is, or as base64)."""
        return self.output in ("image", "base64")


@dataclass(frozen=True)
class Job:
    """Everything the CV work of one request needs: the model's name, parsed parameters and the bytes."""

    model: str
    output: str  # the endpoint's kind of answer (Endpoint.output)
    answer: AnswerFormat
    values: dict[str, Any]
    explicit: frozenset[str]  # parameters the client (or the route) set, not defaults
    images: tuple[bytes, ...]
    batch: bool  # several images, one answer each
    label: str  # what a detection without a label of its own is
    max_pixels: int
    budget: Budget  # what the request may cost, before its own bytes are counted
    max_answer: int  # bytes the answer's body may be (Settings.max_answer_bytes): a picture past it is a 413

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        """With pickle protocol 5 the images may cross out of band (a buffer each, not copied into the pickle)."""
        values = [getattr(self, f.name) for f in dataclasses.fields(self)]
        if int(protocol) >= 5:
            values[_IMAGES] = tuple(pickle.PickleBuffer(d) for d in self.images)
        return Job, tuple(values)


_IMAGES = [f.name for f in dataclasses.fields(Job)].index("images")


@dataclass(frozen=True)
class Outcome:
    """The model's answer (for a batch, one body per image), and the picture when one was asked for."""

    result: Any
    picture: bytes | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class ImagePlan:
    """How one image will be decoded and run, worked out from its header: checked against the budget."""

    header: Header
    gray: bool
    reduce: int
    values: dict[str, Any]
    work: int  # windows a cascade evaluates, plus decoded pixels / DECODE_WORK
    memory: int  # bytes the decode may take (what the budget leaves it)
    scan: ScanPlan | None = None  # a Rescaling model's own plan, which its run follows

    @property
    def decoded_pixels(self) -> int:
        return math.ceil(self.header.width / self.reduce) * math.ceil(self.header.height / self.reduce)


def run_job(models: Any, job: Job) -> Outcome:
    """Do the job with ``models`` (the registry): the model's answer, or raise the ``ApiError`` that says why not."""
    started = time.perf_counter()
    model = models.get(job.model)
    if job.batch:
        return Outcome(_batch(model, job), seconds=time.perf_counter() - started)
    data = job.images[0]
    left = room_left(job.budget, job.images)
    plan = plan_image(model, data, job.values, job.explicit, job.max_pixels, left)
    budget.check_memory(answer_memory(job.output, job.answer, plan.header, plan.decoded_pixels), left,
                        f"the answer for this {plan.header.width}x{plan.header.height} image",
                        "ask for output=json, format=jpeg, or send a smaller image")
    decoded, result = execute(model, data, plan)
    picture = None
    if job.answer.picture:
        image = result if job.output == "image" else annotate(data, result, job.label, decoded, job.max_pixels)
        picture = encode(image, job.answer.fmt)
        _check_answer(len(picture) * 4 // 3 if job.answer.output == "base64" else len(picture), job.max_answer,
                      plan.header)
    return Outcome(result if job.output != "image" else None, picture, time.perf_counter() - started)


def _check_answer(size: int, most: int, header: Header) -> None:
    """413 for an answer larger than ``most`` bytes: the web worker holds each answer until it is sent."""
    if size > most:
        raise TooLarge(f"the answer for this {header.width}x{header.height} image is {size / 2**20:.1f} MB; "
                       f"an answer may be {most / 2**20:.0f} MB (three times MYSITE_MAX_UPLOAD_MB): "
                       "ask for format=jpeg, output=json, or send a smaller image")


def room_left(limit: Budget, images: tuple[bytes, ...]) -> Budget:
    """What ``limit`` leaves for the work, shared by ``images``: the request's bytes are held throughout,
    twice (the body and the form's copy of the image)."""
    return Budget(limit.memory - 2 * sum(len(d) for d in images), limit.work, len(images))


def plan_image(model: Model, data: bytes, values: dict[str, Any], explicit: frozenset[str], max_pixels: int,
               limit: Budget) -> ImagePlan:
    """Read the header, pick the decode size, and refuse (413/422) what is over the budget, before any pixel.

    A ``Rescaling`` model plans the reduction and its scan itself, checked against the budget, and
    is given that plan to run; a ``WholeImage`` model is decoded whole, no larger than
    its ``decode_side`` when it has one (the DNN models, whose input is a few hundred pixels).
    """
    gray = model.input == "gray"
    header = read_header(data, max_pixels)
    work = 0
    scan = None
    if isinstance(model, Rescaling):
        scan = model.plan(header, values, explicit, limit)
        reduce, values, work = scan.reduce, dict(scan.values), scan.work
    else:
        reduce = reduction_for(header, model.decode_side)
    what = f"decoding this {header.width}x{header.height} {header.format}{' with transparency' if header.alpha else ''}"
    if header.pixels > header.width * header.height:
        what += f" (through {header.pixels / 1e6:.1f} megapixels at once)"
    budget.check_memory(decode_memory(header, gray, reduce), limit, what, "send a smaller image")
    plan = ImagePlan(header, gray, reduce, values, work, limit.memory, scan)
    return dataclasses.replace(plan, work=work + plan.decoded_pixels // DECODE_WORK)


def _room_enough(need: int) -> None:
    """In-process, and in a process that keeps no heap between requests: nothing to give back first."""


# Called with a decode's planned peak before it starts: a process that keeps freed heap for its next
# request gives it back when this decode will not reuse it (set by mysite/server/pool.py).
before_decode: Callable[[int], None] = _room_enough


def execute(model: Model, data: bytes, plan: ImagePlan) -> tuple[Decoded, Any]:
    """Decode as planned and run the model; the decoded image and the model's answer (in original pixels)."""
    before_decode(decode_memory(plan.header, plan.gray, plan.reduce))
    decoded = decode_image(data, max_pixels=plan.header.width * plan.header.height, gray=plan.gray,
                           reduce=plan.reduce, header=plan.header, max_bytes=plan.memory)
    if isinstance(model, Rescaling) and plan.scan is not None:
        return decoded, model.run(decoded.image, plan.scan)
    result = model.run(decoded.image, **plan.values)
    return decoded, rescale(result, decoded)


def run_all(models: Any, job: Job) -> Outcome:
    """The model's answer for each image of ``job``, in order: images that stand or fall together (a face
    registration's photos, a match's two). Planned and checked together as a batch's are, before any is
    decoded; the first image that cannot be done is the error of them all (naming it), and nothing is run."""
    started = time.perf_counter()
    model = models.get(job.model)
    plans = [p for p in _plans(model, job, whole=True) if isinstance(p, ImagePlan)]  # all of them, or it raised
    results = []
    for i, (data, plan) in enumerate(zip(job.images, plans), 1):
        try:
            results.append(execute(model, data, plan)[1])
        except ApiError as exc:
            raise _of_image(exc, i, len(plans)) from None
    return Outcome(results, seconds=time.perf_counter() - started)


def _plans(model: Model, job: Job, whole: bool = False) -> list[ImagePlan | ApiError]:
    """Every image planned before any is decoded, the request's pixels and work summed against its budget:
    16 images may together cost what one may, no more. An image that cannot be done has its error in its
    place (one bad image spoils nothing for the others), or with ``whole`` raises it, naming the image."""
    each = room_left(job.budget, job.images)
    plans: list[ImagePlan | ApiError] = []
    for i, data in enumerate(job.images, 1):
        try:
            plans.append(plan_image(model, data, dict(job.values), job.explicit, job.max_pixels, each))
        except ApiError as exc:
            if whole:
                raise _of_image(exc, i, len(job.images)) from None
            plans.append(exc)
    ok = [p for p in plans if isinstance(p, ImagePlan)]
    pixels = sum(p.header.pixels for p in ok)
    if pixels > job.max_pixels:
        raise TooLarge(f"the {len(job.images)} images hold {pixels / 1e6:.1f} megapixels together; "
                       f"the limit for one request is {job.max_pixels / 1e6:.1f} megapixels")
    budget.check_work(sum(p.work for p in ok), job.budget, f"these {len(job.images)} images together",
                      "send fewer or smaller images per request")
    return plans


def _of_image(exc: ApiError, i: int, images: int) -> ApiError:
    """``exc``, its message naming the image it is about when there are several."""
    if images > 1:
        exc.message = f"image {i}: {exc.message}"
        exc.args = (exc.message,)
    return exc


def _batch(model: Model, job: Job) -> list[dict[str, Any]]:
    """Each image's answer in the book's shape, or its own error body (``_plans``)."""
    plans = _plans(model, job)
    results: list[dict[str, Any]] = []
    for data, plan in zip(job.images, plans):
        if isinstance(plan, ApiError):
            results.append(plan.body())
            continue
        try:
            results.append({"status": "ok", "result": execute(model, data, plan)[1]})
        except ApiError as exc:
            results.append(exc.body())
    return results


def answer_memory(output_kind: str, fmt: AnswerFormat, header: Header, decoded_pixels: int) -> int:
    """Peak bytes of making this request's answer (0 for JSON and text)."""
    if fmt.output in ("json", "text"):
        return 0
    if output_kind == "image":  # the model's picture (as large as the decoded image), encoded
        encoded = (3 if fmt.fmt == "png" else 2) * decoded_pixels
        return 2 * decoded_pixels + encoded + (encoded * 4 // 3 if fmt.output == "base64" else 0)
    return budget.answer_memory(header, fmt.fmt, fmt.output == "base64")  # detections drawn on the upload


def annotate(data: bytes, detections: Any, label: str, decoded: Decoded | None, max_pixels: int) -> Any:
    """The uploaded picture with ``detections`` drawn on it, in colour and at full size.

    Boxes are in original pixels: ``decoded`` is drawn on only when it is the upload as it is,
    not a gray or reduced copy; otherwise the upload is decoded again in colour.
    """
    if decoded is not None and decoded.image.ndim == 3 and decoded.scale == 1:
        photo = decoded.image
    else:
        if decoded is not None:
            before_decode(decode_memory(decoded.header, False, 1))
        photo = decode_image(data, max_pixels=max_pixels).image
    return draw_detections(photo, detections, default_label=label)


def drawn_upload(models: Any, data: bytes, detections: Any, label: str, max_pixels: int, memory: int,
                 max_bytes: int) -> bytes | None:
    """The upload with ``detections`` drawn, as JPEG; None when drawing it would pass ``memory``, or the JPEG
    ``max_bytes`` (the page's view)."""
    try:
        header = read_header(data, max_pixels)
    except ApiError:
        return None
    if budget.answer_memory(header, "jpeg", base64=True) > memory:
        return None
    drawn = encode(annotate(data, detections, label, None, max_pixels))
    return drawn if len(drawn) <= max_bytes else None


def thumbnail_of(models: Any, data: bytes, side: int, max_pixels: int, memory: int) -> bytes | None:
    """The upload at most ``side`` pixels wide and high, as JPEG (a large JPEG is decoded at 1/2 to 1/8);
    None when decoding it would pass ``memory`` (the page's view: the API may have decoded it gray or smaller)."""
    try:
        header = read_header(data, max_pixels)
    except ApiError:
        return None
    reduce = reduction_for(header, side)
    if decode_memory(header, False, reduce) > memory:
        return None
    image = decode_image(data, max_pixels=header.width * header.height, reduce=reduce, header=header,
                         max_bytes=memory).image
    return encode(thumbnail(image, side), quality=85)


def reduction_for(header: Header, side: int | None) -> int:
    """The largest decode reduction (8, 4, 2) that keeps the long side at least ``side``; 1 without one."""
    if not side:
        return 1
    long_side = max(header.width, header.height)
    return next((r for r in (8, 4, 2) if long_side / r >= side), 1)


def rescale(result: Any, decoded: Decoded) -> Any:
    """Boxes found on a reduced decode, in original pixels (other answers as they are)."""
    if decoded.scale == 1 or not isinstance(result, list):
        return result
    w, h = decoded.header.width, decoded.header.height
    return [{**d, "box": clip([v / decoded.scale for v in d["box"]], w, h)} if isinstance(d, dict) and "box" in d
            else d for d in result]
