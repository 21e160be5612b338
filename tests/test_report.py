"""Tests of the self-contained HTML report (lsm.report)."""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pytest

import lsm.report as report_mod
from lsm.exceptions import OutputExistsError
from lsm.report import make_report
from lsm.results import _AtlasLookup

from result_factory import synthetic_cohort, synthetic_result

_VOID = {"img", "meta", "br", "hr", "input", "link", "col", "wbr", "source", "area", "base"}
_SECTIONS = ["summary", "cohort", "overlap", "maps", "null", "clusters", "parameters",
             "provenance"]


class _Parser(HTMLParser):
    """Checks nesting and collects sections, images, links and text per section."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors = [], []
        self.sections, self.images, self.urls, self.tags = {}, [], [], []
        self.current = None
        self.text = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag not in _VOID:
            self.stack.append(tag)
        if tag == "section":
            self.current = attrs.get("id")
            self.sections[self.current] = []
            self.text[self.current] = []
        if self.current is not None:
            self.sections[self.current].append(tag)
        if tag == "img":
            self.images.append((self.current, attrs.get("src", ""), attrs.get("alt")))
        for key in ("src", "href", "action", "data", "poster"):
            if key in attrs and tag != "img":
                self.urls.append(attrs[key])

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.text[self.current].append(data)


def parse(text):
    parser = _Parser()
    parser.feed(text)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    parser.text = {k: " ".join(v) for k, v in parser.text.items()}
    return parser


@pytest.fixture(scope="module")
def cohort():
    full = synthetic_cohort(60, seed=0)
    # drop two subjects so the drop list has rows
    return full.select(subjects=full.subjects[:-2])


@pytest.fixture(scope="module")
def result(cohort):
    return synthetic_result(cohort, params={"covariates": ["age", "<b>sex</b>"]})


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, cohort, result):
    path = tmp_path_factory.mktemp("report") / "report.html"
    out = make_report(result, path, cohort=cohort, atlas=None)
    assert out == path
    return path


def test_report_is_well_formed_and_has_every_section(report_file):
    text = report_file.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    p = parse(text)
    assert list(p.sections) == _SECTIONS
    for section in _SECTIONS:
        assert "h2" in p.sections[section]
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags


def test_report_is_self_contained(report_file):
    text = report_file.read_text(encoding="utf-8")
    p = parse(text)
    # every link is an in-page anchor to a section that exists; no external resource
    assert p.urls and all(u.startswith("#") and u[1:] in p.sections for u in p.urls)
    assert all(src.startswith("data:image/png;base64,") for _, src, _ in p.images)
    assert "url(" not in text and "@import" not in text
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//|file:)", text)


def test_report_images_are_real_pngs(report_file):
    p = parse(report_file.read_text(encoding="utf-8"))
    by_section = {}
    for section, src, alt in p.images:
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = mpimg.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 200
        assert pixels[..., :3].std() > 0.05  # a drawing, not a blank canvas
        by_section.setdefault(section, []).append(alt)
    assert by_section["overlap"] == ["lesion overlap"]
    assert by_section["maps"] == ["thresholded z map, ortho", "thresholded z map, axial slices",
                                  "thresholded z map, glass brain"]
    assert by_section["null"] == ["permutation null"]
    assert "could not be drawn" not in report_file.read_text(encoding="utf-8")


def test_report_contents(report_file, cohort, result):
    text = report_file.read_text(encoding="utf-8")
    p = parse(text)
    cohort_text = p.text["cohort"]
    assert f"Cohort of {len(cohort)} subjects" in cohort_text
    dropped = list(cohort.excluded["subject"])
    assert len(dropped) == 2 and all(s in cohort_text for s in dropped)
    assert "sub-missing01" in cohort_text and "missing score 'score'" in cohort_text
    # the cluster table lists every cluster with its size and peak
    table = result.clusters(atlas=None)
    assert len(table) >= 1
    clusters_text = p.text["clusters"]
    for row in table.itertuples():
        assert f"{row.n_voxels}" in clusters_text
        assert f"{row.peak_z:.4g}" in clusters_text
        assert f" {row.n_voxels * 64} " in clusters_text  # mm^3 in full, not 1.856e+03
    n_rows = p.sections["clusters"].count("tr") - 1  # minus the header row
    assert n_rows == len(table)
    params = p.text["parameters"]
    assert "ttest" in params and "fwe" in params and "n_permutations" in params
    prov = p.text["provenance"]
    assert np.__version__ in prov and f"{len(result.provenance['subjects'])} analysed" in prov
    summary = p.text["summary"]
    assert "Significant voxels" in summary and str(result.n_significant) in summary
    # user text is escaped, never interpreted as markup
    assert "<b>sex</b>" not in text and "&lt;b&gt;sex&lt;/b&gt;" in text


def test_cluster_caption_matches_the_labelling(report_file, tmp_path, result, monkeypatch):
    # atlas=None (as in the demo): the caption must not claim atlas territories
    clusters_text = parse(report_file.read_text(encoding="utf-8")).text["clusters"]
    assert "Liu et al." not in clusters_text and "Arterial territories" not in clusters_text
    assert "not labelled with arterial territories (no atlas)" in clusters_text
    # atlas asked for but not found: the table says "unavailable", the caption says why
    from lsm.exceptions import DataFetchError

    def missing(cls, level, data_dir):
        raise DataFetchError("no atlas here")

    monkeypatch.setattr(_AtlasLookup, "get", classmethod(missing))
    path = make_report(result, tmp_path / "r.html", atlas="arterial")
    clusters_text = parse(path.read_text(encoding="utf-8")).text["clusters"]
    assert "the arterial atlas was not found" in clusters_text
    assert "Liu et al." not in clusters_text


def test_overlap_uses_the_analysed_subjects(cohort, result):
    img, caption = report_mod._analysed_overlap(result, cohort, None)
    expected = sum(cohort.lesion_mask(s).astype(int) for s in result.provenance["subjects"])
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected)
    assert f"n = {len(result.provenance['subjects'])}" in caption
    img, caption = report_mod._analysed_overlap(result, None, None)
    assert img is result.n_lesioned and "from the result" in caption


def test_overlap_caption_maximum_of_a_fraction_map(tmp_path, cohort, result):
    from lsm.plotting import overlap_image

    fraction = overlap_image(cohort, result.provenance["subjects"], proportion=True)
    expected = np.asarray(fraction.dataobj).max()
    assert 0 < expected < 1
    path = make_report(result, tmp_path / "r.html", overlap_img=fraction, atlas=None)
    overlap_text = parse(path.read_text(encoding="utf-8")).text["overlap"]
    assert f"Maximum {expected:.4g}." in overlap_text  # was "Maximum 0."


def test_report_without_cohort_and_without_significant_voxel(tmp_path, cohort):
    res = synthetic_result(cohort, significant=False)
    path = make_report(res, tmp_path / "r.html", atlas=None)
    text = path.read_text(encoding="utf-8")
    p = parse(text)
    assert "No cohort was given" in p.text["cohort"]
    assert "No voxel survived" in p.text["maps"]
    assert "No clusters" in p.text["clusters"]
    assert [alt for s, _, alt in p.images if s == "maps"] == ["unthresholded z map"]


def test_report_refuses_overwrite_and_is_atomic(tmp_path, result, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("old", encoding="utf-8")

    def boom(*args, **kwargs):
        raise AssertionError("the report must not be drawn when the file exists")

    monkeypatch.setattr(report_mod, "report_html", boom)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        make_report(result, path, atlas=None)
    assert path.read_text(encoding="utf-8") == "old"

    def crash(*args, **kwargs):
        raise RuntimeError("crash while drawing")

    monkeypatch.setattr(report_mod, "report_html", crash)
    with pytest.raises(RuntimeError, match="crash while drawing"):
        make_report(result, path, overwrite=True, atlas=None)
    assert path.read_text(encoding="utf-8") == "old"
    with pytest.raises(RuntimeError):
        make_report(result, tmp_path / "new.html", atlas=None)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.html"]

    monkeypatch.setattr(report_mod, "report_html", lambda *a, **k: "<!DOCTYPE html><p>new</p>")
    result.to_html(path, overwrite=True, atlas=None)
    assert path.read_text(encoding="utf-8") == "<!DOCTYPE html><p>new</p>"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.html"]


@pytest.mark.shared_data
def test_report_cluster_territories_real_atlas(tmp_path, cohort, result, shared_data_dir,
                                               monkeypatch):
    monkeypatch.setattr(_AtlasLookup, "_cache", {})
    path = result.to_html(tmp_path / "r.html", cohort=cohort, data_dir=shared_data_dir)
    p = parse(path.read_text(encoding="utf-8"))
    table = result.clusters(data_dir=shared_data_dir)
    assert (table["territory_level2"] != "unavailable").all()
    assert "Arterial territories" in p.text["clusters"]
    for row in table.itertuples():
        assert row.territories_level2 in p.text["clusters"]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report_file, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    png = tmp_path / "report.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={png}", "--window-size=1200,3000", report_file.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pixels = mpimg.imread(png)
    assert pixels.shape[:2] == (3000, 1200)
    rgb = pixels[..., :3]
    # the page is drawn: white background with text and the embedded figures (dark pixels)
    assert (rgb.mean(axis=2) < 0.2).mean() > 0.02
    # the header rule (#2a5d8f) is there: a row that is mostly that blue
    blue = np.all(np.abs(rgb - np.array([0x2a, 0x5d, 0x8f]) / 255) < 0.03, axis=2)
    assert blue.sum(axis=1).max() > 600


def _sparse_ttest(lesions, score):
    """Pooled-variance t per voxel from sparse sums (lesioned vs spared subjects)."""
    n = lesions.shape[0]
    n1 = np.asarray(lesions.sum(axis=0)).ravel().astype(float)
    s1 = lesions.T @ score
    q1 = lesions.T @ score ** 2
    n0, s0, q0 = n - n1, score.sum() - s1, (score ** 2).sum() - q1
    ss = (q1 - s1 ** 2 / n1) + (q0 - s0 ** 2 / n0)
    return (s1 / n1 - s0 / n0) / np.sqrt(ss / (n - 2) * (1 / n1 + 1 / n0)), n1


@pytest.mark.shared_data
def test_report_on_soop(tmp_path, soop_nihss_2mm, shared_data_dir, monkeypatch):
    from scipy import stats

    from lsm.results import VLSMResult

    monkeypatch.setattr(_AtlasLookup, "_cache", {})
    cohort = soop_nihss_2mm
    lesions = cohort.lesion_matrix().astype(float).tocsc()
    score = cohort.phenotype["nihss"].to_numpy(dtype=float)
    n_lesioned = np.asarray(lesions.sum(axis=0)).ravel()
    tested = (n_lesioned >= 0.05 * len(cohort)) & (n_lesioned <= 0.95 * len(cohort))
    t, _ = _sparse_ttest(lesions[:, tested], score)
    p = 2 * stats.t.sf(np.abs(t), len(cohort) - 2)
    z = np.sign(t) * stats.norm.isf(p / 2)
    res = VLSMResult.from_arrays(
        affine=cohort.affine, shape=cohort.shape, tested=tested, stat=t, z=z, p=p,
        p_corrected=np.minimum(p * tested.sum(), 1), significant=p * tested.sum() < 0.05,
        n_lesioned=n_lesioned.astype(int), threshold=None, null_distribution=None,
        params={"score": "nihss", "method": "ttest", "correction": "bonferroni (test)"},
        provenance={"n_subjects": len(cohort), "subjects": list(cohort.subjects)})
    assert res.n_significant > 100  # NIHSS is strongly tied to lesion location in SOOP
    path = res.to_html(tmp_path / "soop.html", cohort=cohort, data_dir=shared_data_dir)
    p_ = parse(path.read_text(encoding="utf-8"))
    assert f"Cohort of {len(cohort)} subjects" in p_.text["cohort"]
    assert str(len(cohort.excluded)) in p_.text["cohort"]
    table = res.clusters(data_dir=shared_data_dir)
    assert table.loc[0, "territory_level2"] != "unavailable"
    assert table.loc[0, "territories_level2"] in p_.text["clusters"]
    assert len(p_.images) == 4  # overlap, ortho, axial slices, glass brain (no null)


def test_engine_result_saves_loads_and_reports(tmp_path):
    """Integration with lsm.vlsm: its result round-trips and renders."""
    import lsm
    from lsm.results import VLSMResult

    cohort = synthetic_cohort(40, seed=2)
    res = lsm.vlsm(cohort, "score", n_permutations=49, correction="fwe", random_state=0)
    loaded = VLSMResult.load(res.save(tmp_path / "res", atlas=None))
    for name in ("stat", "z", "p", "p_corrected", "significant", "mask_img", "n_lesioned"):
        np.testing.assert_array_equal(np.asarray(getattr(res, name).dataobj),
                                      np.asarray(getattr(loaded, name).dataobj))
    np.testing.assert_array_equal(res.null_distribution, loaded.null_distribution)
    assert loaded.params == res.params and loaded.provenance == res.provenance
    path = loaded.to_html(tmp_path / "r.html", cohort=cohort, atlas=None)
    p = parse(path.read_text(encoding="utf-8"))
    assert list(p.sections) == _SECTIONS
    assert [alt for s, _, alt in p.images if s == "null"] == ["permutation null"]
