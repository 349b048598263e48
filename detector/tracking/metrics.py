"""Tracking metrics: CLEAR (MOTA, ID switches, fragmentations), identity (IDF1) and HOTA.

    counts = sequence_counts(data)                  # one sequence (see sequence.py)
    scores = final_scores(combine([counts, ...]))   # {"HOTA": 0.71, "MOTA": 0.83, ...}

Definitions follow the papers and TrackEval (whose results these equal on the
same files, tests/tracking/test_metrics.py):
- CLEAR (Bernardin & Stiefelhagen 2008): per frame, boxes pair at IoU >= 0.5,
  keeping last frame's pairs first; MOTA = 1 - (FN + FP + IDSW) / GT.
- Identity (Ristani et al. 2016): one global optimal ground-truth <-> track
  pairing; IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN).
- HOTA (Luiten et al. 2021): for each IoU threshold alpha in 0.05..0.95,
  sqrt(DetA * AssA); the score is the mean over the 19 thresholds.
Every ratio is in 0..1; counts are integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from detector.tracking.sequence import SequenceData

ALPHAS = np.arange(0.05, 0.99, 0.05)  # the 19 HOTA thresholds 0.05 .. 0.95
MATCH_IOU = 0.5
_EPS = np.finfo(float).eps
_SUMMED = (
    "TP",
    "FN",
    "FP",
    "IDSW",
    "MT",
    "PT",
    "ML",
    "Frag",
    "MOTP_sum",
    "frames",
    "IDTP",
    "IDFN",
    "IDFP",
    "HOTA_TP",
    "HOTA_FN",
    "HOTA_FP",
    "LocA_sum",
)


def _clear(data: SequenceData) -> dict[str, Any]:
    res = {
        "TP": 0,
        "FN": 0,
        "FP": 0,
        "IDSW": 0,
        "MT": 0,
        "PT": 0,
        "ML": 0,
        "Frag": 0,
        "MOTP_sum": 0.0,
        "frames": data.num_frames,
    }
    if data.num_pred_dets == 0 or data.num_gt_dets == 0:
        res["FN"], res["FP"] = data.num_gt_dets, data.num_pred_dets
        res["ML"] = data.num_gt_ids if data.num_pred_dets == 0 else 0
        return res
    present = np.zeros(data.num_gt_ids)
    matched = np.zeros(data.num_gt_ids)
    fragments = np.zeros(data.num_gt_ids)
    last_track = np.full(data.num_gt_ids, np.nan)  # last track each object matched, ever
    previous_track = np.full(data.num_gt_ids, np.nan)  # the track it matched in the previous frame
    for gt_ids, pred_ids, similarity in zip(
        data.gt_ids, data.pred_ids, data.similarity, strict=True
    ):
        if len(gt_ids) == 0:
            res["FP"] += len(pred_ids)
            continue
        if len(pred_ids) == 0:
            res["FN"] += len(gt_ids)
            present[gt_ids] += 1
            continue
        # Continuing last frame's pairs outweighs any IoU gain (the 1000), then IoU decides.
        continuing = pred_ids[None, :] == previous_track[gt_ids[:, None]]
        score = 1000 * continuing + similarity
        score[similarity < MATCH_IOU - _EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        good = score[rows, cols] > _EPS
        rows, cols = rows[good], cols[good]
        matched_gt, matched_pred = gt_ids[rows], pred_ids[cols]
        before = last_track[matched_gt]
        res["IDSW"] += int(np.sum(~np.isnan(before) & (matched_pred != before)))
        present[gt_ids] += 1
        matched[matched_gt] += 1
        was_untracked = np.isnan(previous_track)
        last_track[matched_gt] = matched_pred
        previous_track[:] = np.nan
        previous_track[matched_gt] = matched_pred
        fragments += was_untracked & ~np.isnan(previous_track)
        res["TP"] += len(rows)
        res["FN"] += len(gt_ids) - len(rows)
        res["FP"] += len(pred_ids) - len(rows)
        res["MOTP_sum"] += float(similarity[rows, cols].sum())
    ratio = matched[present > 0] / present[present > 0]
    res["MT"] = int(np.sum(ratio > 0.8))
    res["PT"] = int(np.sum(ratio >= 0.2)) - res["MT"]
    res["ML"] = data.num_gt_ids - res["MT"] - res["PT"]
    res["Frag"] = int(np.sum(fragments[fragments > 0] - 1))
    return res


def _identity(data: SequenceData) -> dict[str, Any]:
    if data.num_pred_dets == 0 or data.num_gt_dets == 0:
        return {"IDTP": 0, "IDFN": data.num_gt_dets, "IDFP": data.num_pred_dets}
    n_gt, n_pred = data.num_gt_ids, data.num_pred_ids
    overlap = np.zeros((n_gt, n_pred))
    gt_count, pred_count = np.zeros(n_gt), np.zeros(n_pred)
    for gt_ids, pred_ids, similarity in zip(
        data.gt_ids, data.pred_ids, data.similarity, strict=True
    ):
        rows, cols = np.nonzero(similarity >= MATCH_IOU)
        np.add.at(overlap, (gt_ids[rows], pred_ids[cols]), 1)
        gt_count[gt_ids] += 1
        pred_count[pred_ids] += 1
    # Square problem: each object pairs with a track or with its own "unmatched" column
    # (costing all its boxes as misses), and each track with a real or dummy object.
    size = n_gt + n_pred
    fn_cost, fp_cost = np.zeros((size, size)), np.zeros((size, size))
    fp_cost[n_gt:, :n_pred] = 1e10
    fn_cost[:n_gt, n_pred:] = 1e10
    fn_cost[:n_gt, :n_pred] = gt_count[:, None]
    fn_cost[np.arange(n_gt), n_pred + np.arange(n_gt)] = gt_count
    fp_cost[:n_gt, :n_pred] = pred_count[None, :]
    fp_cost[n_gt + np.arange(n_pred), np.arange(n_pred)] = pred_count
    fn_cost[:n_gt, :n_pred] -= overlap
    fp_cost[:n_gt, :n_pred] -= overlap
    rows, cols = linear_sum_assignment(fn_cost + fp_cost)
    idfn = int(fn_cost[rows, cols].sum())
    idfp = int(fp_cost[rows, cols].sum())
    return {"IDTP": int(gt_count.sum()) - idfn, "IDFN": idfn, "IDFP": idfp}


def _hota(data: SequenceData) -> dict[str, Any]:
    n_alpha = len(ALPHAS)
    res: dict[str, Any] = {
        key: np.zeros(n_alpha)
        for key in ("HOTA_TP", "HOTA_FN", "HOTA_FP", "LocA_sum", "AssA", "AssRe", "AssPr")
    }
    if data.num_pred_dets == 0 or data.num_gt_dets == 0:
        res["HOTA_FN"] += data.num_gt_dets
        res["HOTA_FP"] += data.num_pred_dets
        return res
    n_gt, n_pred = data.num_gt_ids, data.num_pred_ids
    potential = np.zeros((n_gt, n_pred))
    gt_count, pred_count = np.zeros((n_gt, 1)), np.zeros((1, n_pred))
    for gt_ids, pred_ids, similarity in zip(
        data.gt_ids, data.pred_ids, data.similarity, strict=True
    ):
        # Each pair's share of the two boxes' total similarity (a soft, per-frame IoU of ids).
        denominator = similarity.sum(0)[None, :] + similarity.sum(1)[:, None] - similarity
        share = np.zeros_like(similarity)
        positive = denominator > _EPS
        share[positive] = similarity[positive] / denominator[positive]
        potential[gt_ids[:, None], pred_ids[None, :]] += share
        gt_count[gt_ids] += 1
        pred_count[0, pred_ids] += 1
    alignment = potential / (gt_count + pred_count - potential)  # global id-to-id Jaccard
    matches = np.zeros((n_alpha, n_gt, n_pred))
    for gt_ids, pred_ids, similarity in zip(
        data.gt_ids, data.pred_ids, data.similarity, strict=True
    ):
        if len(gt_ids) == 0 or len(pred_ids) == 0:
            res["HOTA_FP"] += len(pred_ids)
            res["HOTA_FN"] += len(gt_ids)
            continue
        rows, cols = linear_sum_assignment(
            -(alignment[gt_ids[:, None], pred_ids[None, :]] * similarity)
        )
        pair_similarity = similarity[rows, cols]
        for a, alpha in enumerate(ALPHAS):
            good = pair_similarity >= alpha - _EPS
            count = int(good.sum())
            res["HOTA_TP"][a] += count
            res["HOTA_FN"][a] += len(gt_ids) - count
            res["HOTA_FP"][a] += len(pred_ids) - count
            if count:
                res["LocA_sum"][a] += pair_similarity[good].sum()
                matches[a, gt_ids[rows[good]], pred_ids[cols[good]]] += 1
    for a in range(n_alpha):
        tp = np.maximum(1, res["HOTA_TP"][a])
        counts = matches[a]
        res["AssA"][a] = (
            np.sum(counts * (counts / np.maximum(1, gt_count + pred_count - counts))) / tp
        )
        res["AssRe"][a] = np.sum(counts * (counts / np.maximum(1, gt_count))) / tp
        res["AssPr"][a] = np.sum(counts * (counts / np.maximum(1, pred_count))) / tp
    return res


def sequence_counts(data: SequenceData) -> dict[str, Any]:
    """CLEAR, identity and HOTA counts of one sequence (combine with `combine`)."""
    return {"name": data.name, **_clear(data), **_identity(data), **_hota(data)}


def combine(all_counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool sequences: counts add up, association scores average weighted by HOTA_TP."""
    total: dict[str, Any] = {key: sum(counts[key] for counts in all_counts) for key in _SUMMED}
    weight = np.maximum(1.0, total["HOTA_TP"])
    for key in ("AssA", "AssRe", "AssPr"):
        total[key] = sum(counts[key] * counts["HOTA_TP"] for counts in all_counts) / weight
    total["name"] = "COMBINED"
    return total


def final_scores(counts: dict[str, Any]) -> dict[str, Any]:
    """Scores from counts (one sequence or combined): ratios in 0..1 plus the counts."""
    gt = max(1, counts["TP"] + counts["FN"])
    tp, fp, fn = counts["HOTA_TP"], counts["HOTA_FP"], counts["HOTA_FN"]
    det_a = tp / np.maximum(1, tp + fn + fp)
    hota = np.sqrt(det_a * counts["AssA"])
    loc_a = np.maximum(1e-10, counts["LocA_sum"]) / np.maximum(1e-10, tp)
    idtp, idfp, idfn = counts["IDTP"], counts["IDFP"], counts["IDFN"]
    return {
        "name": counts["name"],
        "HOTA": float(hota.mean()),
        "DetA": float(det_a.mean()),
        "AssA": float(counts["AssA"].mean()),
        "DetRe": float((tp / np.maximum(1, tp + fn)).mean()),
        "DetPr": float((tp / np.maximum(1, tp + fp)).mean()),
        "AssRe": float(counts["AssRe"].mean()),
        "AssPr": float(counts["AssPr"].mean()),
        "LocA": float(loc_a.mean()),
        "MOTA": (counts["TP"] - counts["FP"] - counts["IDSW"]) / gt,
        "MOTP": counts["MOTP_sum"] / max(1, counts["TP"]),
        "IDF1": idtp / max(1.0, idtp + 0.5 * idfp + 0.5 * idfn),
        "IDP": idtp / max(1, idtp + idfp),
        "IDR": idtp / max(1, idtp + idfn),
        "IDSW": int(counts["IDSW"]),
        "Frag": int(counts["Frag"]),
        "MT": int(counts["MT"]),
        "PT": int(counts["PT"]),
        "ML": int(counts["ML"]),
        "TP": int(counts["TP"]),
        "FP": int(counts["FP"]),
        "FN": int(counts["FN"]),
        "IDTP": int(idtp),
        "IDFP": int(idfp),
        "IDFN": int(idfn),
    }
