"""Training samples built from several images: mosaic and mixup around the usual pipeline.

    from detector.data.augment.multi_image import augment_sample
    sample = augment_sample(transform, (image, boxes, labels, ignore), load,
                            num_records=len(records), sample_seed=seed, mosaic=True,
                            image_size=448)

`load(index)` returns (image, boxes, labels, ignore) of a record, for partner
images; the sample's own record comes decoded (decoding failures
are the caller's business: `DetectionDataset` substitutes the next decodable
image). All randomness comes from `sample_seed` (the sampler's per-sample seed),
so a sample is the same whichever worker builds it and a resumed run rebuilds it
exactly:

- the mosaic's draws (apply it? the three partners, the centre) use their own
  stream, numpy's default_rng([sample_seed, MOSAIC_STREAM]);
- the albumentations pipeline is then re-seeded with `sample_seed` itself and
  runs on the mosaic, or on the single image;
- mixup's draws (apply it? the partner record, the partner's own sample seed,
  the weight ~ Beta(alpha, alpha)) use a third stream,
  default_rng([sample_seed, MIXUP_STREAM]); the partner is built like any sample
  (a mosaic too when the plan has mosaic on) at the same input side, and the two
  are blended (detector/data/augment/mixup.py).

`mosaic=False` (the sampler's plan, `train.close_mosaic`) skips the mosaic even
when the `augment:` list has one; mixup is not affected. With neither entry
nothing extra is drawn, so samples are exactly those of the single-image pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.data.augment.mixup import blend_samples
from detector.data.augment.mosaic import mosaic_centre, place_mosaic
from detector.data.augment.transforms import TrainTransform, TransformedSample
from detector.data.letterbox import PAD_VALUE, compute_letterbox

MOSAIC_STREAM = 0x4D4F53  # "MOS": tags the mosaic's stream apart from the pipeline's
MIXUP_STREAM = 0x4D4958  # "MIX"
_SEED_LIMIT = 2**63
Loaded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # image, boxes, labels, ignore


def _applied(
    params: dict[str, float] | None, sample_seed: int, stream: int
) -> np.random.Generator | None:
    """The entry's own generator for this sample when it is configured
    and its p-draw says apply, else None."""
    if params is None:
        return None
    rng = np.random.default_rng([sample_seed, stream])
    return rng if rng.random() < params["p"] else None


def _mosaic_input(
    transform: TrainTransform,
    load: Callable[[int], Loaded],
    first: Loaded,
    num_records: int,
    sample_seed: int,
    image_size: int,
) -> Loaded | None:
    """The S x S mosaic of `first` and three partners, or None when the draw says no mosaic."""
    params = transform.mosaic
    rng = _applied(params, sample_seed, MOSAIC_STREAM)
    if params is None or rng is None:
        return None
    partners = rng.integers(0, num_records, size=3)
    centre = mosaic_centre(rng, image_size, params["centre_range"])
    parts = [first] + [load(int(index)) for index in partners]
    box_filter = transform.box_filter
    tiles = place_mosaic(
        [p[0] for p in parts],
        [p[1] for p in parts],
        centre,
        image_size,
        fill=PAD_VALUE,
        min_visibility=box_filter["min_visibility"],
        min_size=box_filter["min_size"],
    )
    labels = np.concatenate([np.asarray(p[2], np.int64).reshape(-1) for p in parts])
    ignore = np.concatenate([np.asarray(p[3], bool).reshape(-1) for p in parts])
    offsets = np.cumsum([0] + [len(np.asarray(p[2]).reshape(-1)) for p in parts[:-1]])
    rows = offsets[tiles.source] + tiles.box_index
    return tiles.image, tiles.boxes, labels[rows], ignore[rows]


def single_sample(
    transform: TrainTransform,
    first: Loaded,
    load: Callable[[int], Loaded],
    *,
    num_records: int,
    sample_seed: int,
    mosaic: bool,
    image_size: int,
) -> TransformedSample:
    """One sample: the record `first` (or its mosaic, when planned and drawn)
    through the pipeline."""
    height, width = first[0].shape[:2]
    tiled = (
        _mosaic_input(transform, load, first, num_records, sample_seed, image_size)
        if mosaic
        else None
    )
    transform.set_seed(sample_seed)
    sample = transform(*(tiled or first), image_size=image_size)
    # The nominal geometry stays that of the sample's own record (training never maps boxes back).
    sample.letterbox = compute_letterbox(height, width, image_size)
    return sample


def augment_sample(
    transform: TrainTransform,
    first: Loaded,
    load: Callable[[int], Loaded],
    *,
    num_records: int,
    sample_seed: int,
    mosaic: bool,
    image_size: int,
) -> TransformedSample:
    """A training sample for (index, sample_seed) under the sampler's plan
    (mosaic on/off, input side).

    Args:
        transform: the training pipeline (its `mosaic` entry, if any, says p and centre_range).
        first: (image, boxes, labels, ignore) of the sample's own record.
        load: index -> the same for a partner record.
        num_records: how many records partners are drawn from.
        sample_seed: the sampler's seed for this sample.
        mosaic: False turns the mosaic off (train.close_mosaic).
        image_size: the batch's input side S.

    Returns:
        TransformedSample with an [S, S, 3] image.
    """
    sample = single_sample(
        transform,
        first,
        load,
        num_records=num_records,
        sample_seed=sample_seed,
        mosaic=mosaic,
        image_size=image_size,
    )
    params = transform.mixup
    rng = _applied(params, sample_seed, MIXUP_STREAM)
    if params is None or rng is None:
        return sample
    partner, partner_seed = int(rng.integers(0, num_records)), int(rng.integers(0, _SEED_LIMIT))
    weight = float(rng.beta(params["alpha"], params["alpha"]))
    other = single_sample(
        transform,
        load(partner),
        load,
        num_records=num_records,
        sample_seed=partner_seed,
        mosaic=mosaic,
        image_size=image_size,
    )
    return blend_samples(sample, other, weight)
