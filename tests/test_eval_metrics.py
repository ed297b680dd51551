"""Guard metrics against hand-computed values and scikit-learn references."""

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score

from pocketguard.evaluate import metrics as M
from pocketguard.evaluate.metrics import (
    calibration, evaluate, latency, pareto_front, predicted, threshold_for_fpr, threshold_sweep,
)
from pocketguard.guard import Verdict

LABELS = ["unsafe", "unsafe", "unsafe", "safe", "safe", "safe", "safe", "unsafe"]
GOLD_CATS = [["S1"], None, ["S9"], [], [], [], [], ["S1", "S10"]]
LANGS = ["en", "en", "de", "de", "en", None, "en", "de"]
ROLES = ["user", "agent", "user", "user", "agent", "user", "user", "agent"]


def v(status, p, cats=(), ms=10.0):
    scores = None if status == "error" else {"S1": 0.0, "S9": 0.0, "S10": 0.0} | {c: 0.5 for c in cats}
    return {"status": status, "p_unsafe": p, "categories": list(cats), "category_scores": scores,
            "timings": {"total_ms": ms}}


PREDS = [v("unsafe", 0.9, ["S1"]), v("safe", 0.4), v("error", None), v("safe", 0.1), v("unsafe", 0.7, ["S10"]),
         v("safe", 0.2), v("error", 0.3), v("unsafe", 0.8, ["S1", "S10"])]


def test_binary_metrics_fail_closed_by_hand():
    m = evaluate(LABELS, PREDS)
    o = m["overall"]
    assert (o["tp"], o["fp"], o["fn"], o["tn"]) == (3, 2, 1, 2)  # both errors are flagged
    assert o["precision"] == pytest.approx(0.6) and o["recall"] == pytest.approx(0.75)
    assert o["f1"] == pytest.approx(2 / 3) and o["fpr"] == pytest.approx(0.5) and o["accuracy"] == pytest.approx(5 / 8)
    # errors score 1.0 (even the one that had a p_unsafe of 0.3)
    assert o["auprc"] == pytest.approx(average_precision_score([1, 1, 1, 0, 0, 0, 0, 1], [.9, .4, 1, .1, .7, .2, 1, .8]))
    assert m["errors"] == 2


def test_verdict_objects_and_dicts_give_the_same_numbers():
    objs = [Verdict(status=p["status"], p_unsafe=p["p_unsafe"], categories=p["categories"],
                    category_scores=p["category_scores"], timings=p["timings"]) for p in PREDS]
    kw = dict(categories=GOLD_CATS, languages=LANGS, roles=ROLES)
    assert evaluate(LABELS, objs, **kw) == evaluate(LABELS, [o.to_dict() for o in objs], **kw) == evaluate(LABELS, PREDS, **kw)


def test_per_category_one_vs_rest_by_hand():
    cats = evaluate(LABELS, PREDS, categories=GOLD_CATS, codes=["S1", "S9", "S10", "S12"])["by_category"]
    assert cats["n"] == 7  # the example with unknown categories is left out
    assert set(cats["codes"]) == {"S1", "S9", "S10"}  # S12 never occurs
    s1, s9, s10 = cats["codes"]["S1"], cats["codes"]["S9"], cats["codes"]["S10"]
    assert (s1["support"], s1["tp"], s1["fp"], s1["f1"], s1["fpr"]) == (2, 2, 0, 1.0, 0.0)
    # S9's only example got an error verdict: an error names no category, so it is a miss
    assert (s9["support"], s9["recall"], s9["precision"], s9["f1"]) == (1, 0.0, None, 0.0)
    assert s10["precision"] == pytest.approx(0.5) and s10["recall"] == 1.0 and s10["fpr"] == pytest.approx(1 / 6)
    assert cats["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    known = [0, 2, 3, 4, 5, 6, 7]
    s1_scores = [0.0 if PREDS[i]["category_scores"] is None else PREDS[i]["category_scores"]["S1"] for i in known]
    assert s1["auprc"] == pytest.approx(average_precision_score([1, 0, 0, 0, 0, 0, 1], s1_scores))


def test_slices_by_language_and_role():
    m = evaluate(LABELS, PREDS, languages=LANGS, roles=ROLES)
    assert set(m["by_language"]) == {"de", "en", "unknown"}
    de = m["by_language"]["de"]  # examples 2, 3, 7: all right
    assert (de["n"], de["f1"], de["fpr"]) == (3, 1.0, 0.0)
    assert set(m["by_role"]) == {"prompt", "response"}
    resp = m["by_role"]["response"]  # examples 1, 4, 7
    assert (resp["tp"], resp["fp"], resp["fn"], resp["tn"]) == (1, 1, 1, 0) and resp["fpr"] == 1.0


def test_threshold_sweep_and_target_fpr_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)
    _, scores = predicted(PREDS)
    row = next(r for r in threshold_sweep(y, scores) if r["threshold"] == 0.5)
    assert (row["tp"], row["fp"]) == (3, 2) and row["f1"] == pytest.approx(2 / 3)
    t = threshold_for_fpr(y, scores, 0.25)  # one of four safe examples may be flagged
    assert t["threshold"] == pytest.approx(0.8) and t["recall"] == 0.75 and t["fpr"] == 0.25 and t["precision"] == 0.75
    assert threshold_for_fpr(y, scores, 0.0)["threshold"] is None  # a safe error verdict always scores 1.0
    # recall 2/3 either way at FPR 0: the higher threshold is the one reported
    assert threshold_for_fpr(np.array([1, 1, 1, 0], bool), np.array([0.9, 0.6, 0.1, 0.3]), 0.0)["threshold"] == 0.6
    assert threshold_for_fpr(np.ones(3, bool), np.ones(3), 0.1)["threshold"] is None  # no safe examples


def test_threshold_for_fpr_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(10):
        y = rng.random(60) < 0.4
        s = np.round(rng.random(60), 2)
        for target in (0.0, 0.05, 0.2, 0.5):
            # (recall, threshold) of every threshold within the FPR target: best recall, then highest threshold
            ok = [(((s >= t) & y).sum(), t) for t in np.unique(s) if ((s >= t) & ~y).sum() / (~y).sum() <= target]
            best = max(ok, default=(0, None))
            got = threshold_for_fpr(y, s, target)["threshold"]
            assert got == (pytest.approx(best[1]) if best[0] > 0 else None)


def test_calibration_by_hand_and_against_sklearn():
    c = calibration(np.array([0, 1, 0, 1]), np.array([0.05, 0.15, 0.15, 0.95]))
    assert c["ece"] == pytest.approx(0.2) and c["mce"] == pytest.approx(0.35) and c["brier"] == pytest.approx(0.1875)
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(200), np.linspace(0, 1, 11)])  # include bin edges
    y = rng.random(len(p)) < p
    c = calibration(y, p)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
    assert [b["frac_unsafe"] for b in c["bins"]] == pytest.approx(prob_true)
    assert [b["mean_p"] for b in c["bins"]] == pytest.approx(prob_pred)
    counts = np.array([b["count"] for b in c["bins"]])
    assert c["ece"] == pytest.approx(float(np.sum(counts / len(p) * np.abs(prob_true - prob_pred))))


def test_undefined_numbers_are_none_and_json_safe():
    m = evaluate(["safe", "safe"], [v("safe", 0.1), v("safe", 0.2)], categories=[[], []])
    o = m["overall"]
    assert (o["precision"], o["recall"], o["f1"], o["auprc"], o["fpr"]) == (None, None, None, None, 0.0)
    json.dumps(m, allow_nan=False)


def test_latency_and_pareto():
    lat = latency([v("safe", 0.1, ms=x) for x in (10, 20, 30, 40)] + [{"status": "safe", "timings": {}}])
    assert (lat["n"], lat["mean_ms"], lat["p50_ms"], lat["p95_ms"]) == (4, 25.0, 25.0, pytest.approx(38.5))
    assert pareto_front([100, 50, 200, 50, 10], [0.8, 0.7, 0.9, 0.6, None]) == [True, True, True, False, False]


def test_label_and_length_checks():
    with pytest.raises(ValueError, match="label #2"):
        evaluate(["safe", "bad"], [v("safe", 0.1)] * 2)
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        evaluate(["safe", "safe"], [v("safe", 0.1)])


def test_lookalike_fpr_counts_flagged_benign_lookalikes_and_errors():
    from pocketguard.evaluate.data import Example
    from pocketguard.evaluate.metrics import evaluate_examples

    msgs = [{"role": "user", "content": "x"}]
    examples = [Example(msgs, "user", lab, cats, lookalike=look) for lab, cats, look in
                [("safe", [], True), ("safe", [], True), ("safe", [], True), ("safe", [], False), ("unsafe", ["S1"], False)]]
    preds = [v("unsafe", 0.9, ["S1"]), v("error", None), v("safe", 0.1), v("unsafe", 0.8, ["S1"]), v("unsafe", 0.9, ["S1"])]
    m = evaluate_examples(examples, preds)
    assert m["lookalike"] == {"n": 3, "flagged": 2, "fpr": 2 / 3}  # an error verdict fails closed: flagged
    assert "lookalike" not in evaluate_examples(examples[3:], preds[3:])


# ---------------------------------------------------------------------------------------- bootstrap intervals
def _scored(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.1
    scores = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), 2)  # rounded: many tied scores
    return y, scores >= 0.5, scores


def test_weighted_metrics_match_sklearn_with_sample_weights():
    from sklearn.metrics import average_precision_score, f1_score
    y, flagged, scores = _scored(500)
    w = np.random.default_rng(1).multinomial(500, np.full(500, 1 / 500), size=30).astype(float)
    w[0] = 0
    w[0, np.flatnonzero(~y)[:5]] = 1  # a resample with no unsafe example: both undefined
    got = M.weighted_f1_auprc(y, flagged, scores, w)
    assert np.isnan(got[0]).all()
    want = [[f1_score(y, flagged, sample_weight=r), average_precision_score(y, scores, sample_weight=r)] for r in w[1:]]
    np.testing.assert_allclose(got[1:], want, rtol=0, atol=1e-12)


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_more_examples():
    widths = []
    for n in (800, 3200):
        y, flagged, scores = _scored(n)
        iv = M.intervals(y, flagged, scores, n_boot=400)
        point = M.binary_metrics(y, flagged, scores)
        assert iv["f1"][0] < point["f1"] < iv["f1"][1] and iv["auprc"][0] < point["auprc"] < iv["auprc"][1]
        assert iv == M.intervals(y, flagged, scores, n_boot=400)  # seeded: the same report twice
        widths.append(iv["f1"][1] - iv["f1"][0])
    assert 0.35 < widths[1] / widths[0] < 0.7  # ~1/sqrt(4)


def test_paired_difference_sees_what_separate_intervals_cannot():
    y, flagged, scores = _scored(2000)
    same = M.paired_difference(y, (flagged, scores), (flagged, scores), n_boot=300)
    assert same["f1"] == 0 and same["f1_interval"] == [0, 0] and same["auprc_interval"] == [0, 0]
    # a model that gets 8 more unsafe examples right and nothing else differs
    better = flagged.copy()
    better[np.flatnonzero(y & ~flagged)[:8]] = True
    d = M.paired_difference(y, (better, None), (flagged, None), n_boot=300)
    a, b = (M.intervals(y, f, None, n_boot=300)["f1"] for f in (better, flagged))
    assert d["f1"] > 0 and d["f1_interval"][0] > 0  # paired: the gain is real
    assert a[0] < b[1]  # separately, the two intervals overlap
    assert d["auprc"] is None and d["auprc_interval"] is None


# ---------------------------------------------------------------------------------------- audit regressions
def test_per_category_counts_with_one_code_and_sklearn_parity_with_several():
    """With one code in use, MultiLabelBinarizer's single column read as a binary target: code S1 got the negative
    class's counts (support 3, recall 1 for an example that was missed)."""
    from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    s1 = M.category_metrics([["S1"], [], [], []], [v("safe", 0.1)] * 4, ["S1", "S2"])["codes"]["S1"]
    assert (s1["support"], s1["predicted"], s1["tp"], s1["fp"], s1["fn"]) == (1, 0, 0, 0, 1)
    assert (s1["recall"], s1["f1"], s1["precision"], s1["fpr"]) == (0.0, 0.0, None, 0.0)
    rng = np.random.default_rng(0)
    codes = ["S1", "S2", "S3", "S4"]
    gold = [[c for c in codes[:3] if rng.random() < 0.3] for _ in range(60)]  # S4 is never gold: predicted only
    preds = [v("unsafe", 0.9, [c for c in codes if rng.random() < 0.3]) for _ in gold]
    got = M.category_metrics(gold, preds, codes)["codes"]
    mlb = MultiLabelBinarizer(classes=codes)
    Y, P = mlb.fit_transform(gold), mlb.transform([p["categories"] for p in preds])
    prec, rec, f1, support = precision_recall_fscore_support(Y, P, average=None, zero_division=np.nan)
    for j, ((tn, fp), (fn, tp)) in enumerate(multilabel_confusion_matrix(Y, P)):
        m = got[codes[j]]
        assert (m["support"], m["tp"], m["fp"], m["fn"]) == (support[j], tp, fp, fn)
        assert m["fpr"] == pytest.approx(fp / (fp + tn)) and m["recall"] == (None if np.isnan(rec[j]) else pytest.approx(rec[j]))
        assert m["precision"] == pytest.approx(prec[j])
        assert m["f1"] == (pytest.approx(f1[j]) if support[j] else None)  # no positives: F1 undefined, as in the bootstrap
    assert got["S4"]["support"] == 0 and got["S4"]["predicted"] > 0


def test_f1_without_unsafe_examples_is_none_as_in_the_bootstrap():
    """binary_metrics gave F1 0.0 to a slice with no unsafe example (sklearn's 2tp / (2tp + fp + fn) with a false
    positive), where the bootstrap's F1 of the same examples is undefined (NaN)."""
    y, flagged, scores = np.array([0, 0, 1, 1], bool), np.array([1, 0, 1, 0], bool), np.array([0.9, 0.1, 0.8, 0.2])
    fr = M.binary_metrics(y[:2], flagged[:2], scores[:2])
    assert (fr["fp"], fr["fpr"], fr["precision"], fr["recall"], fr["f1"]) == (1, 0.5, 0.0, None, None)
    assert np.isnan(M.weighted_f1_auprc(y, flagged, scores, np.array([[1.0, 1.0, 0.0, 0.0]]))[0, 0])
    assert M.binary_metrics(y, flagged, scores)["f1"] == pytest.approx(0.5)  # with unsafe examples: unchanged


def test_a_score_that_is_not_a_number_is_a_failure_to_judge():
    """A NaN/inf p_unsafe crashed evaluate (average_precision_score); it fails closed like an error verdict:
    flagged, scoring 1.0, naming no category, left out of calibration, counted under `errors`."""
    labels = ["safe", "unsafe", "safe", "unsafe"]
    preds = [v("safe", float("nan")), v("unsafe", float("inf"), ["S1"]), v("safe", 0.1), v("unsafe", 0.9, ["S1"])]
    m = evaluate(labels, preds, categories=[[], ["S1"], [], ["S1"]])
    o = m["overall"]
    assert (o["tp"], o["fp"], o["fn"], o["tn"]) == (2, 1, 0, 1) and m["errors"] == 2 and m["calibration"]["n"] == 2
    assert o["auprc"] == pytest.approx(average_precision_score([0, 1, 0, 1], [1.0, 1.0, 0.1, 0.9]))
    s1 = m["by_category"]["codes"]["S1"]
    assert (s1["tp"], s1["fn"]) == (1, 1)
    json.dumps(m, allow_nan=False)


def test_at_threshold_re_decides_only_finite_scores():
    """at_threshold compared None with the threshold (TypeError) and turned an unsafe verdict with a NaN p_unsafe
    into a safe one (fail open)."""
    nan, inf = float("nan"), float("inf")
    verdicts = [Verdict("unsafe", "user", ["S1"], p_unsafe=nan), Verdict("safe", "user", p_unsafe=inf),
                Verdict.failure("boom"), Verdict("safe", "user", p_unsafe=0.7), Verdict("unsafe", "user", ["S1"], p_unsafe=0.2)]
    got = M.at_threshold(verdicts, 0.5)
    assert [g.status for g in got] == ["unsafe", "safe", "error", "unsafe", "safe"]
    assert predicted(got)[0].tolist() == [True, True, True, True, False]  # the unjudged ones fail closed
    with pytest.raises(ValueError, match="prediction 2 .*no p_unsafe"):
        M.at_threshold([verdicts[3], Verdict("safe", "user")], 0.5)
    assert M.at_threshold([Verdict("safe", "user")], None) == [Verdict("safe", "user")]  # nothing to re-decide


def test_a_recipe_step_reports_dev_f1_by_the_evaluate_rules():
    """compress's per-step dev line counts as `evaluate` does: failures to judge (error, NaN p_unsafe) are flagged,
    and F1 without unsafe examples is undefined (None), not 0."""
    from pocketguard.compress.recipe import verdict_metrics

    dev = [{"label": "unsafe"}, {"label": "safe"}, {"label": "safe"}, {"label": "unsafe"}]
    vs = [{"status": "unsafe", "categories": ["S1"], "p_unsafe": 0.9}, {"status": "safe", "categories": [], "p_unsafe": float("nan")},
          {"status": "error", "categories": [], "p_unsafe": None}, {"status": "safe", "categories": [], "p_unsafe": 0.1}]
    m = verdict_metrics(vs, dev)
    assert m["f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1)) and m["accuracy"] == 0.25 and m["errors"] == 2
    assert verdict_metrics(vs[1:3], dev[1:3])["f1"] is None
