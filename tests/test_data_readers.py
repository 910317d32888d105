"""Every data reader on tiny fixture datasets: shapes, labels, ids, each skip reason, errors; the registry."""
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from cmr_demo.data import DataError, IngestReport, load_data
from cmr_demo.data import clip4cmr, manifest, npz, wikipedia
from cmr_demo.data.rows import TEST_FRACTION

REAL_WIKIPEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/wikipedia"
CATEGORIES = ["art", "biology", "geography"]


def write_image(path: Path, colour=(200, 30, 30), fmt="JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path, fmt)
    return path


def write_lists(folder: Path, train: list[tuple], test: list[tuple]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "categories.list").write_text("\n".join(CATEGORIES) + "\n")
    for name, rows in (("trainset_txt_img_cat.list", train), ("testset_txt_img_cat.list", test)):
        (folder / name).write_text("".join(f"{t}\t{i}\t{c}\n" for t, i, c in rows))


def rows_for(prefix: str, n: int) -> list[tuple]:
    return [(f"{prefix}t{k}", f"{prefix}i{k}", k % len(CATEGORIES) + 1) for k in range(n)]


# ---------------------------------------------------------------- wikipedia, features variant

def make_wikipedia_features(folder: Path, n_train=12, n_test=6) -> Path:
    write_lists(folder, rows_for("tr", n_train), rows_for("te", n_test))
    rng = np.random.default_rng(0)
    scipy.io.savemat(folder / "raw_features.mat", {
        "I_tr": rng.random((n_train, 8)), "T_tr": rng.random((n_train, 5)),
        "I_te": rng.random((n_test, 8)), "T_te": rng.random((n_test, 5))})
    return folder


def test_wikipedia_features(tmp_path):
    folder = make_wikipedia_features(tmp_path / "wiki")
    report = IngestReport()
    data = wikipedia.read(str(folder), report)
    assert data.val is None and report.total == 0
    assert data.class_names == CATEGORIES
    assert data.train.image_features.shape == (12, 8) and data.train.text_features.shape == (12, 5)
    assert data.test.image_features.shape == (6, 8) and data.test.image_features.dtype == np.float32
    assert data.train.ids[:3] == ["trt0", "trt1", "trt2"]
    assert data.train.labels.tolist() == [k % 3 for k in range(12)]  # category 1..3 -> label 0..2
    assert data.train.images is None and data.train.texts is None
    mat = scipy.io.loadmat(folder / "raw_features.mat")
    np.testing.assert_allclose(data.test.text_features, mat["T_te"], rtol=1e-6)  # row i = line i


def test_wikipedia_row_count_mismatch_names_both(tmp_path):
    folder = make_wikipedia_features(tmp_path / "wiki")
    write_lists(folder, rows_for("tr", 11), rows_for("te", 6))
    with pytest.raises(DataError, match=r"I_tr.*trainset_txt_img_cat\.list"):
        wikipedia.read(str(folder), IngestReport())


def test_wikipedia_bad_category_and_missing_files(tmp_path):
    folder = make_wikipedia_features(tmp_path / "wiki")
    write_lists(folder, rows_for("tr", 12)[:-1] + [("x", "y", 4)], rows_for("te", 6))
    with pytest.raises(DataError, match=r"line 12.*1\.\.3"):
        wikipedia.read(str(folder), IngestReport())
    write_lists(folder, rows_for("tr", 12), rows_for("te", 6))
    (folder / "raw_features.mat").write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="raw_features.mat"):
        wikipedia.read(str(folder), IngestReport())
    (folder / "categories.list").unlink()
    with pytest.raises(DataError, match="categories.list"):
        wikipedia.read(str(folder), IngestReport())
    empty = tmp_path / "empty"
    write_lists(empty, rows_for("tr", 3), rows_for("te", 3))
    with pytest.raises(DataError, match="raw_features.mat"):
        wikipedia.read(str(empty), IngestReport())


# ---------------------------------------------------------------- wikipedia, raw media variant

def make_wikipedia_media(folder: Path) -> Path:
    """Six good items (train t0..t3, test u0..u1) and one of each broken kind in train."""
    train = rows_for("", 4) + [("noimg", "gone", 1), ("badimg", "bad", 2), ("notext", "i-nt", 3),
                                ("emptytext", "i-et", 1)]
    test = [("u0", "j0", 1), ("u1", "j1", 2)]
    write_lists(folder, train, test)
    for text_id, image_id, cat in train + test:
        if image_id not in ("gone", "bad"):
            write_image(folder / "images" / CATEGORIES[cat - 1] / f"{image_id}.jpg")
    (folder / "images/biology/bad.jpg").write_bytes(b"this is not a jpeg")
    texts = folder / "texts"
    texts.mkdir()
    for text_id in ("t0", "u0", "noimg", "badimg"):
        (texts / f"{text_id}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<document><title>T</title>'
            f"<text>Body of {text_id} &amp; more.</text></document>")
    # not well-formed (stray '&') and not valid UTF-8: taken by pattern, decoded with replacement
    (texts / "t1.xml").write_bytes(b"<document><text>Caf\xe9 & bar <b>x</b></text></document>")
    (texts / "t2.txt").write_text("plain text document\n")
    (texts / "t3.xml").write_text("<document><text>  fourth  </text></document>")
    (texts / "u1.txt").write_text("test text")
    (texts / "emptytext.xml").write_text("<document><text>   </text></document>")
    return folder


def test_wikipedia_media_reads_and_reports(tmp_path):
    folder = make_wikipedia_media(tmp_path / "wiki")
    report = IngestReport()
    data = wikipedia.read(str(folder), report)
    assert data.train.ids == ["t0", "t1", "t2", "t3"] and data.test.ids == ["u0", "u1"]
    assert data.train.labels.tolist() == [0, 1, 2, 0]
    assert data.train.texts[0] == "Body of t0 & more."
    assert data.train.texts[1].startswith("Caf\ufffd & bar") and "<b>" not in data.train.texts[1]
    assert data.train.texts[2:] == ["plain text document", "fourth"]
    assert all(isinstance(p, str) and Path(p).is_file() for p in data.train.images + data.test.images)
    assert data.train.images[1].endswith(os.path.join("images", "biology", "i1.jpg"))
    assert data.train.image_features is None
    assert report.skipped == {"missing image file": ["noimg"], "unreadable image": ["badimg"],
                              "missing text file": ["notext"], "empty text": ["emptytext"]}
    with pytest.raises(DataError, match="noimg"):
        report.check(strict=True)
    report.check(strict=False)


# ---------------------------------------------------------------- manifest

def make_manifest_csv(folder: Path) -> Path:
    img = write_image(folder / "imgs" / "a.jpg")
    write_image(folder / "imgs" / "b.png", fmt="PNG")
    png = (folder / "imgs" / "b.png").read_bytes()
    (folder / "imgs" / "trunc.png").write_bytes(png[:-20])  # a PNG cut short: verify() fails
    header = "id,image,text,label,split\n"
    rows = [
        "a1,imgs/a.jpg,a red square,cat,train", "a2,imgs/b.png,\"a quoted, caption\",dog,train",
        f"a3,{img},absolute path,cat,val", "a4,imgs/a.jpg,test one,dog,test",
        "a5,imgs/a.jpg,test two,cat,TEST",
        "b1,imgs/missing.jpg,x,cat,train", "b2,imgs/trunc.png,x,cat,train",
        "b3,imgs/a.jpg,   ,cat,train", "b4,imgs/a.jpg,x,,train", "a1,imgs/a.jpg,dup,dog,train",
        "b6,imgs/a.jpg,x,cat,holdout", ",imgs/missing.jpg,no id given,cat,train",
    ]
    path = folder / "data.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def test_manifest_csv_reads_and_reports(tmp_path):
    path = make_manifest_csv(tmp_path / "m")
    report = IngestReport()
    data = manifest.read(str(path), report)
    assert data.class_names == ["cat", "dog"]
    assert data.train.ids == ["a1", "a2"] and data.val.ids == ["a3"] and data.test.ids == ["a4", "a5"]
    assert data.train.labels.tolist() == [0, 1] and data.test.labels.tolist() == [1, 0]
    assert data.train.texts == ["a red square", "a quoted, caption"]
    assert data.train.images[0] == str(tmp_path / "m" / "imgs" / "a.jpg")
    assert report.skipped == {
        "missing image file": ["b1", "row-13"], "unreadable image": ["b2"], "empty text": ["b3"],
        "empty label": ["b4"], "duplicate id": ["a1"], "unknown split value": ["b6"]}
    with pytest.raises(DataError, match="duplicate id"):
        report.check(strict=True)


def make_manifest_jsonl(folder: Path, per_class=10) -> Path:
    write_image(folder / "x.jpg")
    lines = [json.dumps({"image": "x.jpg", "text": f"item {k}", "label": k % 2 * 8 + 2})
             for k in range(2 * per_class)]  # integer labels 2 and 10: numeric class order
    lines.insert(3, "{not json")
    lines.insert(5, "[1, 2]")
    lines.insert(7, "")
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_jsonl_holds_out_stratified_test(tmp_path):
    path = make_manifest_jsonl(tmp_path / "m")
    report = IngestReport()
    data = manifest.read(str(path), report)
    assert data.class_names == ["2", "10"]  # numeric, not string, order
    assert report.skipped == {"malformed line": ["row-4", "row-6"]}
    assert len(data.test) == 4 and sorted(np.bincount(data.test.labels).tolist()) == [2, 2]
    assert len(data.train) == 16 and data.val is None
    assert not set(data.train.ids) & set(data.test.ids)
    assert all(i.startswith("row-") for i in data.train.ids)  # row-<line number>
    again = manifest.read(str(path), IngestReport())
    assert again.test.ids == data.test.ids  # fixed seed: the test set never moves
    assert TEST_FRACTION == 0.2


def test_manifest_errors(tmp_path):
    with pytest.raises(DataError, match=r"\.csv.*\.jsonl"):
        manifest.read(str(tmp_path / "data.tsv"), IngestReport())
    with pytest.raises(DataError, match="not found"):
        manifest.read(str(tmp_path / "none.csv"), IngestReport())
    bad = tmp_path / "cols.csv"
    bad.write_text("path,caption,label\nx.jpg,hi,cat\n")
    with pytest.raises(DataError, match=r"missing column.*'image'"):
        manifest.read(str(bad), IngestReport())
    only_train = tmp_path / "train.csv"
    write_image(tmp_path / "x.jpg")
    only_train.write_text("image,text,label,split\nx.jpg,hi,cat,train\n")
    with pytest.raises(DataError, match="no usable .test. rows"):
        manifest.read(str(only_train), IngestReport())
    singletons = tmp_path / "one_each.csv"
    singletons.write_text("image,text,label\nx.jpg,a,cat\nx.jpg,b,dog\n")
    with pytest.raises(DataError, match="2\\+ items"):
        manifest.read(str(singletons), IngestReport())


def test_wikipedia_media_all_skipped_is_an_error(tmp_path):
    folder = tmp_path / "wiki"
    write_lists(folder, rows_for("", 3), rows_for("x", 2))
    (folder / "images").mkdir()
    (folder / "texts").mkdir()
    with pytest.raises(DataError, match=r"no usable train items[\s\S]*missing text file"):
        wikipedia.read(str(folder), IngestReport())


# ---------------------------------------------------------------- npz

def make_npz(path: Path, split=True, **overrides) -> Path:
    n = 10
    arrays = {"image": np.random.default_rng(0).random((n, 6)), "text": np.ones((n, 3), np.float32),
              "label": np.array([0, 1, 2, 0, 1, 2, 0, 1, 5, -1]),
              "ids": np.array([f"n{k}" for k in range(n - 1)] + ["n0"]),
              "class_names": np.array(["zero", "one", "two"])}
    if split:
        arrays["split"] = np.array(["train"] * 4 + ["val", "test", "test", "dev", "train", "train"])
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_reads_and_reports(tmp_path):
    report = IngestReport()
    data = npz.read(str(make_npz(tmp_path / "f.npz")), report)
    assert data.class_names == ["zero", "one", "two"]
    assert data.train.ids == ["n0", "n1", "n2", "n3"] and data.val.ids == ["n4"]
    assert data.test.ids == ["n5", "n6"] and data.test.labels.tolist() == [2, 0]
    assert data.train.image_features.shape == (4, 6) and data.train.text_features.shape == (4, 3)
    assert data.train.image_features.dtype == np.float32
    assert report.skipped == {"unknown split value": ["n7"], "label out of range": ["n8"],
                              "duplicate id": ["n0"]}
    with pytest.raises(DataError):
        report.check(strict=True)


def test_npz_without_split_or_names(tmp_path):
    labels = np.repeat([0, 1], 10)
    path = make_npz(tmp_path / "f.npz", split=False, ids=None, class_names=None, label=labels,
                    image=np.zeros((20, 2)), text=np.zeros((20, 2)))
    report = IngestReport()
    data = npz.read(str(path), report)
    assert report.total == 0 and data.class_names == ["class 0", "class 1"]
    assert np.bincount(data.test.labels).tolist() == [2, 2] and len(data.train) == 16
    assert data.train.ids[0].startswith("row-")


def test_npz_errors(tmp_path):
    with pytest.raises(DataError, match=r"'ids'.*object array"):
        npz.read(str(make_npz(tmp_path / "o.npz", ids=np.array(["a"] * 10, dtype=object))),
                 IngestReport())
    with pytest.raises(DataError, match=r"'text'.*\(9, 3\).*\[10, d\]"):
        npz.read(str(make_npz(tmp_path / "s.npz", text=np.zeros((9, 3)))), IngestReport())
    np.savez(tmp_path / "k.npz", image=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"missing key.*'text'"):
        npz.read(str(tmp_path / "k.npz"), IngestReport())
    (tmp_path / "z.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="z.npz"):
        npz.read(str(tmp_path / "z.npz"), IngestReport())


# ---------------------------------------------------------------- clip4cmr

def clip_part(n: int, labels, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 16)).astype(np.float32), "text": rng.random((n, 16)),
            "label": labels, "ids": np.arange(n)}


def make_clip4cmr(folder: Path, train=None, test=None, protocol=4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train = train if train is not None else clip_part(6, np.array([0, 1, 2, 0, 1, 2]))
    test = test if test is not None else clip_part(3, np.eye(4)[[0, 3, 1]], seed=1)  # one-hot [N, C]
    (folder / "clip_train.pkl").write_bytes(pickle.dumps(train, protocol=protocol))
    (folder / "clip_test.pkl").write_bytes(pickle.dumps(test, protocol=protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_clip4cmr_reads_indices_and_one_hot(tmp_path, protocol):
    report = IngestReport()
    data = clip4cmr.read(str(make_clip4cmr(tmp_path / "c", protocol=protocol)), report)
    assert data.class_names == [f"class {c}" for c in range(4)]  # one-hot width over both files
    assert data.test.labels.tolist() == [0, 3, 1] and data.train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.train.image_features.shape == (6, 16) and data.test.text_features.dtype == np.float32
    assert data.train.ids == ["0", "1", "2", "3", "4", "5"] and data.train.images is None
    assert data.val is None and report.total == 0


def test_clip4cmr_errors(tmp_path):
    multi = np.eye(4)[[0, 3, 1]]
    multi[1, 2] = 1
    with pytest.raises(DataError, match=r"clip_test\.pkl.*row 1.*multi-label"):
        clip4cmr.read(str(make_clip4cmr(tmp_path / "m", test=clip_part(3, multi))), IngestReport())
    short = clip_part(6, np.zeros(6, int))
    short["text"] = short["text"][:5]
    with pytest.raises(DataError, match=r"clip_train\.pkl.*'text'.*\(5, 16\).*\[6, d\]"):
        clip4cmr.read(str(make_clip4cmr(tmp_path / "s", train=short)), IngestReport())
    no_ids = {k: v for k, v in clip_part(6, np.zeros(6, int)).items() if k != "ids"}
    with pytest.raises(DataError, match=r"missing key.*'ids'"):
        clip4cmr.read(str(make_clip4cmr(tmp_path / "k", train=no_ids)), IngestReport())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "clip_train.pkl").write_bytes(pickle.dumps({}))
    with pytest.raises(DataError, match=r"clip_test\.pkl not found.*clip_train\.pkl"):
        clip4cmr.read(str(tmp_path / "half"), IngestReport())


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_clip4cmr_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    train = clip_part(6, np.zeros(6, int))
    train["ids"] = [_Payload(marker)] * 6
    folder = make_clip4cmr(tmp_path / "evil", train=train)
    with pytest.raises(DataError, match=r"refused.*system.*never executed"):
        load_data(f"clip4cmr:{folder}")
    assert not marker.exists()


# ---------------------------------------------------------------- real data and the registry

@pytest.mark.skipif(not REAL_WIKIPEDIA.is_dir(), reason="real Wikipedia features not present")
def test_real_wikipedia():
    report = IngestReport()
    data = wikipedia.read(str(REAL_WIKIPEDIA), report)
    assert (len(data.train), len(data.test)) == (2173, 693) and report.total == 0
    assert data.train.image_features.shape[1] == 128 and data.train.text_features.shape[1] == 10
    assert len(data.class_names) == 10 and data.class_names[0] == "art"
    for split in (data.train, data.test):
        assert sorted(set(split.labels.tolist())) == list(range(10))
