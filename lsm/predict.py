"""Out-of-sample prediction of a score from lesion volume, territory loads and the lesion matrix.

:func:`predict_score` answers *does lesion location predict the score beyond lesion size,
out of sample?* It compares, with nested cross-validation, a model of the clinical
covariates and lesion volume with models that add lesion location: the arterial territory
loads, and the whole lesion matrix (linear kernel ridge, support vector regression). Every
preprocessing step (scaling, the choice of the penalty) is fitted on the training subjects
of each fold only.

Every model is a scikit-learn estimator whose input ``X`` is a column of subject row
numbers: the estimator reads the rows it is given from the cohort's matrices (features, or
the lesion kernel), so that a training fold can only ever see its own subjects (kernel
entries ``train x train`` to fit, ``test x train`` to predict).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin

from ._docs import fill_doc
from ._result import AnalysisResult, Summary, excluded_frame, make_provenance
from ._validation import (
    as_column_list,
    check_alpha,
    check_n_jobs,
    check_n_permutations,
    check_option,
    check_volume_transform,
    resolve_seed,
)
from .exceptions import AnalysisError, PhenotypeError

__all__ = ["predict_score", "PredictionResult", "MODELS", "TARGETS"]

#: Models :func:`predict_score` compares (the first is the reference).
MODELS = ("volume", "territories", "lesions_ridge", "lesions_svr")
#: Kinds of target.
TARGETS = ("continuous", "ordinal", "binary")
#: Metrics per target (the first is the one the permutation test compares).
METRICS = {
    "continuous": ("r2", "r", "mae"),
    "ordinal": ("r2", "spearman", "mae"),
    "binary": ("auc", "balanced_accuracy"),
}
_RIDGE_ALPHAS = tuple(np.logspace(-4, 5, 19))
_SVR_CS = tuple(np.logspace(-2, 2, 5))
#: Permutations per task (fixed, so that the result never depends on n_jobs).
_PERM_CHUNK = 8


# ------------------------------------------------------------------ estimators
class _Shared:
    """An array shared, never copied, by the clones of an estimator.

    ``sklearn.base.clone`` deep-copies parameters: a kernel of the whole cohort would be
    copied at every fit.
    """

    def __init__(self, array):
        self.array = array

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        return f"_Shared(shape={getattr(self.array, 'shape', None)})"


def _rows(X):
    """Subject row numbers from the ``X`` column given to the estimators."""
    return np.asarray(X).reshape(-1).astype(np.int64)


class RowFeatures(TransformerMixin, BaseEstimator):
    """Rows of a feature matrix selected by the subject row numbers in ``X`` (stateless).

    Parameters
    ----------
    features : _Shared
        Holds the (n_subjects, n_features) matrix of the whole cohort.
    """

    def __init__(self, features=None):
        self.features = features

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(self.features.array)[_rows(X)]


def _standardise(train, other=None):
    """Columns centred and scaled with the training rows' mean and SD (constant -> 0)."""
    mean = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    out = (train - mean) / sd
    return out if other is None else (out, (other - mean) / sd)


class NuisanceKernelRidge(RegressorMixin, BaseEstimator):
    """Kernel ridge regression with unpenalised nuisance columns; penalty chosen by LOO.

    The model is ``y = Z beta + K c`` with ``Z`` the intercept and the standardised
    nuisance columns (covariates, lesion volume; not penalised) and ``K`` the lesion kernel
    of the training subjects (scaled to a unit mean diagonal), penalised by
    ``alpha * c' K c``. ``alpha`` is chosen among ``alphas`` by the closed-form
    leave-one-out error on the training subjects (the inner loop of the nested
    cross-validation).

    Parameters
    ----------
    kernel : _Shared
        (n_subjects, n_subjects) kernel of the whole cohort; only ``train x train`` is
        read in ``fit``, ``test x train`` in ``predict``.
    nuisance : _Shared
        (n_subjects, n_nuisance) covariates and lesion volume (may have 0 columns).
    alphas : tuple of float
        Candidate penalties (relative to the unit mean diagonal of the kernel).
    """

    def __init__(self, kernel=None, nuisance=None, alphas=_RIDGE_ALPHAS):
        self.kernel = kernel
        self.nuisance = nuisance
        self.alphas = alphas

    def fit(self, X, y):
        rows = _rows(X)
        y = np.asarray(y, dtype=np.float64)
        K = np.asarray(self.kernel.array)[np.ix_(rows, rows)]
        scale = float(np.mean(np.diag(K)))
        self.kernel_scale_ = scale if scale > 0 else 1.0
        nuis = np.asarray(self.nuisance.array, dtype=np.float64)[rows]
        self.nuisance_mean_ = nuis.mean(axis=0)
        sd = nuis.std(axis=0)
        self.nuisance_sd_ = np.where(sd > 0, sd, 1.0)
        Z = np.column_stack([np.ones(rows.size), (nuis - self.nuisance_mean_) / self.nuisance_sd_])
        s, U = np.linalg.eigh(K / self.kernel_scale_)
        s = np.clip(s, 0.0, None)
        Uy, UZ = U.T @ y, U.T @ Z
        best = None
        for alpha in self.alphas:
            d = 1.0 / (s + alpha)
            AZ = U @ (d[:, None] * UZ)                      # A Z, A = (K + alpha I)^-1
            G = np.linalg.pinv(Z.T @ AZ)
            Ay = U @ (d * Uy)
            Py = Ay - AZ @ (G @ (Z.T @ Ay))                 # P = A - A Z (Z'AZ)^-1 Z'A
            P_diag = (U**2) @ d - np.einsum("ij,jk,ik->i", AZ, G, AZ)
            loo = Py / P_diag                               # leave-one-out residuals
            err = float(np.mean(loo**2))
            if best is None or err < best[0] - 1e-12 * abs(best[0]):
                best = (err, alpha, G, AZ, Ay)
        _, self.alpha_, G, AZ, Ay = best
        self.beta_ = G @ (Z.T @ Ay)
        d = 1.0 / (s + self.alpha_)
        self.dual_coef_ = U @ (d * (U.T @ (y - Z @ self.beta_)))
        self.train_rows_ = rows
        return self

    def predict(self, X):
        rows = _rows(X)
        K = np.asarray(self.kernel.array)[np.ix_(rows, self.train_rows_)] / self.kernel_scale_
        nuis = np.asarray(self.nuisance.array, dtype=np.float64)[rows]
        Z = np.column_stack([np.ones(rows.size), (nuis - self.nuisance_mean_) / self.nuisance_sd_])
        return Z @ self.beta_ + K @ self.dual_coef_


class NuisanceKernelSVM(BaseEstimator):
    """Support vector regression (or classification) on the lesion kernel plus nuisance.

    The kernel is the lesion kernel of the training subjects scaled to a unit mean
    diagonal plus the linear kernel of the standardised nuisance columns (scaled the same
    way), both from training statistics only; libsvm (scikit-learn's ``SVR`` / ``SVC`` with
    ``kernel="precomputed"``) fits it. Regression targets are standardised with the
    training mean and SD (``epsilon`` is then in SD units).

    Parameters
    ----------
    kernel, nuisance : _Shared
        As in :class:`NuisanceKernelRidge`.
    C : float
        libsvm's cost (chosen by the inner grid search of :func:`predict_score`).
    classify : bool
        SVC with balanced class weights instead of SVR.
    """

    def __init__(self, kernel=None, nuisance=None, C=1.0, classify=False):
        self.kernel = kernel
        self.nuisance = nuisance
        self.C = C
        self.classify = classify

    def _gram(self, rows, cols):
        K = np.asarray(self.kernel.array)[np.ix_(rows, cols)] / self.kernel_scale_
        nuis = np.asarray(self.nuisance.array, dtype=np.float64)
        if nuis.shape[1]:
            _, zr = _standardise(nuis[self.train_rows_], nuis[rows])
            _, zc = _standardise(nuis[self.train_rows_], nuis[cols])
            K = K + zr @ zc.T / nuis.shape[1]
        return K

    def fit(self, X, y):
        from sklearn.svm import SVC, SVR

        rows = _rows(X)
        self.train_rows_ = rows
        scale = float(np.mean(np.diag(np.asarray(self.kernel.array)[np.ix_(rows, rows)])))
        self.kernel_scale_ = scale if scale > 0 else 1.0
        K = self._gram(rows, rows)
        y = np.asarray(y, dtype=np.float64)
        if self.classify:
            self.svm_ = SVC(kernel="precomputed", C=self.C, class_weight="balanced").fit(K, y)
            self.classes_ = self.svm_.classes_
        else:
            self.y_mean_, sd = float(y.mean()), float(y.std())
            self.y_sd_ = sd if sd > 0 else 1.0
            self.svm_ = SVR(kernel="precomputed", C=self.C).fit(K, (y - self.y_mean_) / self.y_sd_)
        return self

    def decision_function(self, X):
        return self.svm_.decision_function(self._gram(_rows(X), self.train_rows_))

    def predict(self, X):
        K = self._gram(_rows(X), self.train_rows_)
        if self.classify:
            return self.svm_.predict(K)
        return self.svm_.predict(K) * self.y_sd_ + self.y_mean_

    def score(self, X, y):
        from sklearn.metrics import mean_squared_error, roc_auc_score

        if self.classify:
            return roc_auc_score(y, self.decision_function(X))
        return -mean_squared_error(y, self.predict(X))


# --------------------------------------------------------------------- models
def _logistic_kw():
    """Arguments that keep LogisticRegressionCV's current behaviour without warnings."""
    import inspect

    from sklearn.linear_model import LogisticRegressionCV

    names = inspect.signature(LogisticRegressionCV).parameters
    return {k: v for k, v in (("l1_ratios", (0.0,)), ("use_legacy_attributes", False)) if k in names}


_LOGISTIC_KW = _logistic_kw()


def _model(name, data, target, inner_seed):
    """The scikit-learn estimator of model ``name`` (input: subject row numbers)."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    binary = target == "binary"
    if name in ("volume", "territories"):
        final = (LogisticRegressionCV(Cs=10, cv=5, class_weight="balanced", scoring="roc_auc", max_iter=2000,
                                      **_LOGISTIC_KW) if binary else RidgeCV(alphas=_RIDGE_ALPHAS))
        return Pipeline([("rows", RowFeatures(data[name])), ("scale", StandardScaler()), ("model", final)])
    if name == "lesions_ridge":
        return NuisanceKernelRidge(data["kernel"], data["volume"])
    inner = (StratifiedKFold if binary else KFold)(3, shuffle=True, random_state=inner_seed)
    return GridSearchCV(NuisanceKernelSVM(data["kernel"], data["volume"], classify=binary),
                        {"C": list(_SVR_CS)}, cv=inner)


def _decision(est, X):
    """Score of the positive class (binary targets)."""
    if hasattr(est, "predict_proba") and not isinstance(est, NuisanceKernelRidge):
        try:
            return est.predict_proba(X)[:, 1]
        except AttributeError:
            pass
    if hasattr(est, "decision_function"):
        return est.decision_function(X)
    return est.predict(X)


def _fold_metrics(target, y_true, pred, threshold=None):
    """Metrics of one test fold (``pred``: predictions, or decision scores when binary)."""
    from scipy import stats
    from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, r2_score, roc_auc_score

    if target == "binary":
        return {"auc": roc_auc_score(y_true, pred),
                "balanced_accuracy": balanced_accuracy_score(y_true, pred > threshold)}
    out = {"r2": r2_score(y_true, pred), "mae": mean_absolute_error(y_true, pred)}
    const = np.ptp(pred) == 0 or np.ptp(y_true) == 0
    if target == "continuous":
        out["r"] = np.nan if const else float(stats.pearsonr(y_true, pred)[0])
    else:
        out["spearman"] = np.nan if const else float(stats.spearmanr(y_true, pred)[0])
    return out


def _run_fold(name, data, target, y, train, test, inner_seed):
    """Fit model ``name`` on ``train`` rows, return (metrics, test predictions, info)."""
    est = _model(name, data, target, inner_seed)
    est.fit(train[:, None], y[train])
    if target == "binary":
        pred = _decision(est, test[:, None])
        # decision threshold: 0.5 for probabilities, 0 for SVC, the training prevalence
        # for the least-squares kernel model (fitted to 0/1)
        if isinstance(est, NuisanceKernelRidge):
            threshold = float(np.mean(y[train]))
        elif hasattr(est, "predict_proba") and name in ("volume", "territories"):
            threshold = 0.5
        else:
            threshold = 0.0
        metrics = _fold_metrics(target, y[test], pred, threshold)
    else:
        pred = est.predict(test[:, None])
        metrics = _fold_metrics(target, y[test], pred)
    info = {}
    inner = est.best_estimator_ if hasattr(est, "best_estimator_") else est
    if hasattr(inner, "alpha_"):
        info["hyperparameter"] = float(inner.alpha_)
    elif hasattr(est, "best_params_"):
        info["hyperparameter"] = float(est.best_params_["C"])
    elif hasattr(est, "named_steps"):
        final = est.named_steps["model"]
        info["hyperparameter"] = float(final.alpha_) if hasattr(final, "alpha_") else float(np.ravel(final.C_)[0])
    return metrics, pred, info


def _fold_task(name, data, target, y, train, test, inner_seed):
    return _run_fold(name, data, target, y, train, test, inner_seed)


def _folds(y, target, n_splits, n_repeats, seed):
    """[(repeat, fold, train, test)], drawn from ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    out = []
    seeds = np.random.SeedSequence(seed).generate_state(n_repeats)
    for r in range(n_repeats):
        splitter = (StratifiedKFold if target == "binary" else KFold)(n_splits, shuffle=True,
                                                                      random_state=int(seeds[r]))
        for f, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
            out.append((r, f, train, test))
    return out


def _cv_statistic(y, names, data, target, folds, inner_seed):
    """Mean over folds of the main metric of ``names[1]`` minus that of ``names[0]``."""
    metric = METRICS[target][0]
    means = []
    for name in names:
        vals = [_run_fold(name, data, target, y, tr, te, inner_seed)[0][metric] for _, _, tr, te in folds]
        means.append(float(np.mean(vals)))
    return means[1] - means[0]


def _perm_chunk(chunk, y_fitted, residuals, y_binary, names, data, target, folds, inner_seed):
    """Null statistics of a chunk of permutations (Freedman-Lane, or stratified for binary)."""
    out = []
    for perm in np.ascontiguousarray(chunk):
        y_star = y_binary[perm] if target == "binary" else y_fitted + residuals[perm]
        out.append(_cv_statistic(y_star, names, data, target, folds, inner_seed))
    return np.asarray(out)


# --------------------------------------------------------------------- result
@dataclass
class PredictionResult(AnalysisResult):
    """Outcome of :func:`predict_score`.

    Attributes
    ----------
    folds : DataFrame
        One row per model, repeat and outer fold: ``model``, ``repeat``, ``fold``,
        ``n_train``, ``n_test``, the metrics of the target (``r2``, ``r``/``spearman``,
        ``mae``; or ``auc``, ``balanced_accuracy``) and ``hyperparameter`` (the penalty
        chosen in the training fold: ridge alpha, or SVM C).
    predictions : DataFrame
        Out-of-fold prediction (decision score when binary) of every analysed subject by
        every model, first repeat; columns ``score`` (the target as analysed: 0/1 when
        binary), ``fold`` (the subject's test fold) and one per model.
    test : dict
        The permutation test of "location adds beyond volume": ``model``, ``reference``,
        ``metric``, ``statistic`` (mean fold metric of ``model`` minus that of the
        reference), ``p``, ``n_permutations``, ``scheme``, ``null`` (list); empty when not run.
    params, provenance : dict
    excluded : DataFrame
    """

    folds: pd.DataFrame
    predictions: pd.DataFrame
    test: dict
    params: dict
    provenance: dict
    excluded: pd.DataFrame = field(default_factory=excluded_frame)

    _title = "Out-of-sample prediction"

    @property
    def metrics(self):
        """Metric columns of ``folds``."""
        return [m for m in METRICS[self.params["target"]] if m in self.folds.columns]

    def to_dataframe(self):
        """Per-fold table (a copy of ``folds``)."""
        return self.folds.copy()

    def summary_table(self):
        """Mean and SD over folds of each metric, per model (DataFrame)."""
        agg = self.folds.groupby("model", sort=False)[self.metrics].agg(["mean", "std"])
        agg.columns = [f"{m}_{s}" for m, s in agg.columns]
        return agg

    @property
    def significant(self):
        """Whether location adds beyond volume (p <= alpha), indexed by the tested model."""
        if not self.test:
            return pd.Series(dtype=bool)
        return pd.Series({self.test["model"]: bool(self.test["p"] <= self.params["alpha"])})

    def summary(self):
        """Mean +- SD of each metric per model, and the permutation test."""
        p = self.params
        lines = [f"{self._title}: {p['score']} ({p['target']}), {self.provenance.get('n_subjects')} subjects, "
                 f"{p['n_splits']}-fold CV x {p['n_repeats']}"]
        for model, row in self.summary_table().iterrows():
            txt = ", ".join(f"{m} {row[f'{m}_mean']:.3f} +- {row[f'{m}_std']:.3f}" for m in self.metrics)
            lines.append(f"  {model:<14} {txt}")
        if self.test:
            t = self.test
            lines.append(f"Location beyond volume: {t['metric']}({t['model']}) - {t['metric']}({t['reference']}) "
                         f"= {t['statistic']:.4f}, permutation p = {t['p']:.4g} ({t['n_permutations']} "
                         f"permutations, {t['scheme']})")
        if len(self.excluded):
            lines.append(f"Excluded: {len(self.excluded)} subject(s)")
        return Summary("\n".join(lines))

    def plot(self, metric=None, ax=None):
        """Strip plot of a metric over the outer folds, one column per model."""
        from .plotting import plot_box_strip

        metric = metric or self.metrics[0]
        check_option("metric", metric, self.metrics)

        models = list(dict.fromkeys(self.folds["model"]))
        data = [self.folds.loc[self.folds["model"] == m, metric].to_numpy() for m in models]
        return plot_box_strip(data, models, ax=ax, ylabel=f"{metric} (outer folds)",
                              title=f"{self.params['score']}: out-of-sample {metric}")

    def save(self, path, overwrite=False):
        """Write ``folds.tsv``, ``predictions.tsv`` (with JSON sidecars) and ``result.json``.

        Parameters
        ----------
        path : str or path
            Output folder (written atomically).
        overwrite : bool, default=False
            Replace an existing folder.

        Returns
        -------
        path : Path
        """
        from ._derivatives import write_json, write_tsv
        from ._utils import atomic_output_dir

        desc = {"model": "Model compared (see params.models)", "repeat": "Repeat of the outer CV",
                "fold": "Outer fold", "n_train": "Training subjects", "n_test": "Test subjects",
                "r2": "R squared of the test fold", "r": "Pearson r, test fold",
                "spearman": "Spearman rho, test fold", "mae": "Mean absolute error, test fold",
                "auc": "ROC AUC, test fold", "balanced_accuracy": "Balanced accuracy, test fold",
                "hyperparameter": "Penalty chosen inside the training fold (ridge alpha or SVM C)"}
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            write_tsv(self.folds, tmp / "folds.tsv", descriptions=desc, index=False)
            write_tsv(self.predictions, tmp / "predictions.tsv",
                      descriptions={"score": "Observed target", "fold": "Outer test fold (first repeat)",
                                    **{m: f"Out-of-fold prediction of {m}" for m in self.predictions.columns[2:]}})
            write_json(tmp / "result.json", {"params": self.params, "provenance": self.provenance,
                                             "test": self.test, "excluded": self.excluded.to_dict("records")})
        return Path(path)

    @classmethod
    def load(cls, path):
        """Read a result written by :meth:`save`."""
        import json

        path = Path(path)
        meta = json.loads((path / "result.json").read_text())
        folds = pd.read_csv(path / "folds.tsv", sep="\t", na_values="n/a", keep_default_na=False)
        preds = pd.read_csv(path / "predictions.tsv", sep="\t", na_values="n/a", keep_default_na=False,
                            index_col=0)
        excluded = excluded_frame(pd.DataFrame(meta["excluded"], columns=["subject", "reason"]))
        test = {k: (np.nan if v is None and k in ("p", "statistic") else v) for k, v in meta["test"].items()}
        return cls(folds=folds, predictions=preds, test=test, params=meta["params"],
                   provenance=meta["provenance"], excluded=excluded)


# ------------------------------------------------------------------ main entry
def _numeric(series, column):
    as_num = pd.to_numeric(series.astype(object), errors="coerce")
    bad = series.notna() & as_num.isna()
    if bad.any():
        examples = ", ".join(f"{s}={v!r}" for s, v in series[bad].head(3).items())
        raise PhenotypeError(f"Column {column!r} has non-numeric values ({examples}); recode them or "
                             "declare them missing.")
    return as_num.astype("float64")


@fill_doc
def predict_score(
    cohort,
    score,
    *,
    covariates=None,
    models=MODELS,
    target="continuous",
    volume_transform="linear",
    atlas="arterial",
    level=1,
    test_model=None,
    n_splits=5,
    n_repeats=1,
    n_permutations=100,
    alpha=0.05,
    random_state=None,
    n_jobs=1,
    verbose=0,
):
    """Out-of-sample prediction of a score from lesion volume and lesion location.

    Nested cross-validation of models of increasing content: ``"volume"`` (covariates and
    lesion volume), ``"territories"`` (+ the arterial territory loads), ``"lesions_ridge"``
    and ``"lesions_svr"`` (+ the whole lesion matrix, through its linear kernel: kernel
    ridge regression with the covariates and volume unpenalised, and support vector
    regression). The outer K-fold gives the out-of-sample metrics; inside each training
    fold the penalty is chosen (ridge: closed-form leave-one-out; SVM C: 3-fold grid
    search) and every scaling is fitted, so that nothing of the test subjects leaks into a
    model.

    Parameters
    ----------
    cohort : Cohort
        Lesion masks and phenotype on a common grid.
    %(score)s
    %(covariates)s
    models : sequence of str, default=("volume", "territories", "lesions_ridge", "lesions_svr")
        Models to compare; ``"volume"`` is always fitted (it is the reference).
    target : {"continuous", "ordinal", "binary"}, default="continuous"
        ``"continuous"``: regression, metrics R², Pearson r and MAE. ``"ordinal"`` (e.g.
        mRS): the grades are regressed as numbers (an interval approximation) and scored
        with R², Spearman's rho (rank agreement) and MAE in grades. ``"binary"``: a score with
        two values (the larger is coded 1): balanced-class logistic regression, kernel
        least squares and SVC, scored with ROC AUC and balanced accuracy.
    %(volume_transform)s
    %(atlas)s
    %(level)s
    test_model : str, optional
        Model whose gain over ``"volume"`` is tested by permutation; default
        ``"lesions_ridge"`` if compared, else ``"territories"``.
    n_splits : int, default=5
        Outer folds.
    n_repeats : int, default=1
        Repeats of the outer K-fold with new folds (the spread then includes the fold draw).
    n_permutations : int or None, default=100
        Permutations of the test of "location adds beyond volume" (each one repeats the
        nested cross-validation of the two models); ``None`` skips the test.
    %(alpha)s
    %(random_state)s
    %(n_jobs)s
    %(verbose)s

    Returns
    -------
    result : PredictionResult

    Notes
    -----
    The test statistic is the gain in the main metric (R² or AUC, mean over the outer
    folds) of ``test_model`` over ``"volume"``, on the same folds. Null hypothesis: the
    lesion's location carries no information on the score beyond the covariates and
    volume. For continuous and ordinal targets the null scores follow Freedman and Lane
    (1983) (see Winkler et al. 2014, NeuroImage 92:381): the score is regressed on the
    covariates and volume by least squares, and the residuals are permuted and added back
    to the fitted values, which keeps the score's relation to volume while breaking any
    link to location beyond it. A binary score cannot be rebuilt from residuals: it is
    permuted within five strata of the fitted probability of the covariates-and-volume
    logistic model (a conditional permutation that keeps most of volume's relation to the
    outcome; approximate). ``p = (1 + #{null >= observed}) / (1 + B)``.
    """
    t0 = time.perf_counter()
    from .territory import territory_load

    covariates = as_column_list(covariates, "covariates")
    models = [check_option("models", m, MODELS) for m in ([models] if isinstance(models, str) else list(models))]
    models = ["volume"] + [m for m in dict.fromkeys(models) if m != "volume"]
    check_option("target", target, TARGETS)
    check_volume_transform(volume_transform)
    check_option("level", level, (1, 2))
    alpha = check_alpha(alpha)
    n_jobs = check_n_jobs(n_jobs)
    for name, value, low in (("n_splits", n_splits, 2), ("n_repeats", n_repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"Invalid value for the {name!r} parameter: expected an int >= {low}, "
                             f"but got {value!r} instead.")
    if n_permutations is not None:
        n_permutations = check_n_permutations(n_permutations)
        if test_model is None:
            test_model = "lesions_ridge" if "lesions_ridge" in models else next((m for m in models[1:]), None)
        if test_model is None:
            raise ValueError("The permutation test compares a location model with 'volume', but models "
                             f"{models} has none; add one or pass n_permutations=None.")
        check_option("test_model", test_model, models[1:])
    seed, rng = resolve_seed(random_state)
    if seed is None:
        seed = int(rng.integers(2**31 - 1))

    phenotype = cohort.phenotype.loc[list(cohort.subjects)]
    for col in [score] + covariates:
        if col not in phenotype.columns:
            what = "Score" if col == score else "Covariate"
            raise PhenotypeError(f"{what} column {col!r} is not in the phenotype; available columns: "
                                 f"{list(phenotype.columns)}.")
    y_all = _numeric(phenotype[score], score)
    from ._vlsm import _covariate_frame

    cov = _covariate_frame(phenotype, covariates)
    volume = pd.Series(np.asarray(cohort.lesion_volumes, dtype=np.float64), index=phenotype.index)
    excluded, keep = [], []
    for subject in phenotype.index:
        if np.isnan(y_all[subject]):
            excluded.append((subject, f"missing score {score!r}"))
        elif cov.shape[1] and cov.loc[subject].isna().any():
            excluded.append((subject, "missing covariate " + ", ".join(
                repr(c) for c in cov.columns[cov.loc[subject].isna().to_numpy()])))
        elif volume_transform == "log" and not volume[subject] > 0:
            excluded.append((subject, "zero lesion volume (volume_transform='log')"))
        else:
            keep.append(subject)
    y = y_all[keep].to_numpy()
    if len(keep) < 2 * n_splits:
        raise AnalysisError(f"{len(keep)} subjects left to predict {score!r}; {n_splits}-fold nested "
                            f"cross-validation needs at least {2 * n_splits}.")
    score_coding = None
    if target == "binary":
        levels = np.unique(y)
        if levels.size != 2:
            raise AnalysisError(f"target='binary' needs a score with two values, but {score!r} takes "
                                f"{levels.size} ({levels[:6].tolist()}). Dichotomise it first (e.g. mRS > 2).")
        score_coding = {"0": float(levels[0]), "1": float(levels[1])}
        y = (y == levels[1]).astype(np.float64)
        if min(y.sum(), (1 - y).sum()) < n_splits:
            raise AnalysisError(f"The binary score {score!r} has fewer than n_splits={n_splits} subjects in "
                                "a class; stratified folds need at least one per fold.")
    elif np.ptp(y) == 0:
        raise AnalysisError(f"The score {score!r} is constant over the {len(keep)} analysed subjects.")

    vol = volume[keep].to_numpy()
    vol = np.log10(vol) if volume_transform == "log" else vol
    nuisance = np.column_stack([cov.loc[keep].to_numpy(dtype=np.float64), vol]) if cov.shape[1] else vol[:, None]
    data = {"volume": _Shared(nuisance)}
    if "territories" in models:
        loads = territory_load(cohort, atlas=atlas, level=level, n_jobs=n_jobs)
        terr = loads.loc[keep].drop(columns=["lesion_volume_ml"]).fillna(0.0)
        data["territories"] = _Shared(np.column_stack([nuisance, terr.to_numpy(dtype=np.float64)]))
    if any(m.startswith("lesions") for m in models):
        L = cohort.lesion_matrix(subjects=keep).astype(np.float64)
        data["kernel"] = _Shared(np.asarray((L @ L.T).todense()))

    folds = _folds(y, target, n_splits, n_repeats, seed)
    inner_seed = int(np.random.SeedSequence(seed).generate_state(n_repeats + 1)[-1])
    from .stats import parallel_map

    tasks = [(m, data, target, y, tr, te, inner_seed) for m in models for (_, _, tr, te) in folds]
    outs = parallel_map(_fold_task, tasks, n_jobs=n_jobs, verbose=verbose, desc="cross-validation")
    fold_of = np.zeros(len(y), dtype=np.int64)
    for r, f, _, te in folds:
        if r == 0:
            fold_of[te] = f
    rows = []
    preds = pd.DataFrame({"score": y, "fold": fold_of}, index=pd.Index(keep, name="participant_id"))
    it = iter(outs)
    for m in models:
        oof = np.full(len(y), np.nan)
        for r, f, tr, te in folds:
            metrics, pred, info = next(it)
            rows.append({"model": m, "repeat": r, "fold": f, "n_train": tr.size, "n_test": te.size, **metrics, **info})
            if r == 0:
                oof[te] = pred
        preds[m] = oof
    table = pd.DataFrame(rows)

    test = {}
    if n_permutations is not None:
        metric = METRICS[target][0]
        means = table.groupby("model")[metric].mean()
        observed = float(means[test_model] - means["volume"])
        design = np.column_stack([np.ones(len(y)), nuisance])
        if target == "binary":
            from sklearn.linear_model import LogisticRegression

            fitted = LogisticRegression(max_iter=2000).fit(_standardise(nuisance), y).predict_proba(
                _standardise(nuisance))[:, 1]
            strata = pd.qcut(pd.Series(fitted).rank(method="first"), 5, labels=False).to_numpy()
            perms = np.tile(np.arange(len(y), dtype=np.int32), (n_permutations, 1))
            for s in np.unique(strata):
                idx = np.flatnonzero(strata == s)
                for b in range(n_permutations):
                    perms[b, idx] = idx[rng.permutation(idx.size)]
            y_fitted, residuals, scheme = None, None, "binary score permuted within 5 strata of the volume model"
        else:
            from .stats import draw_permutations

            beta = np.linalg.lstsq(design, y, rcond=None)[0]
            y_fitted = design @ beta
            residuals = y - y_fitted
            perms = draw_permutations(n_permutations, len(y), rng)
            scheme = "Freedman-Lane residuals of the covariates-and-volume model"
        from .stats import permutation_pvalues, run_permutations

        null = np.concatenate(run_permutations(
            _perm_chunk, perms, args=(y_fitted, residuals, y, ("volume", test_model), data, target, folds,
                                      inner_seed),
            chunk_size=_PERM_CHUNK, n_jobs=n_jobs, verbose=verbose, desc="permutation test"))
        p = float(permutation_pvalues(np.array([observed]), null)[0])
        test = {"model": test_model, "reference": "volume", "metric": metric, "statistic": observed, "p": p,
                "n_permutations": int(n_permutations), "scheme": scheme, "null": null.tolist()}

    params = {"score": score, "covariates": covariates, "covariate_columns": list(cov.columns),
              "models": models, "target": target, "score_coding": score_coding,
              "volume_transform": volume_transform, "atlas": atlas if isinstance(atlas, str) or atlas is None
              else "custom", "level": level, "test_model": test_model, "n_splits": int(n_splits),
              "n_repeats": int(n_repeats), "n_permutations": n_permutations, "alpha": alpha,
              "random_state": seed, "ridge_alphas": list(_RIDGE_ALPHAS), "svm_Cs": list(_SVR_CS)}
    provenance = make_provenance(seed=seed, n_jobs=n_jobs, t0=t0, n_subjects=len(keep))
    return PredictionResult(folds=table, predictions=preds, test=test, params=params, provenance=provenance,
                            excluded=excluded_frame(excluded))
