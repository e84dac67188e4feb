"""The search tool: BM25 over a folder or the Shakespeare corpus, kept in step with the files."""

import os

import pytest

from lmstack.errors import LmstackError
from lmstack.tools.search import SearchIndex, collection, search_tool


def tiny_pdf(lines_per_page: list[str]) -> bytes:
    """A minimal valid PDF, one page per string, text in Helvetica."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in lines_per_page:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objs)} 0 R "
                    "/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objs)} 0 R")
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "notes"
    (d / "sub").mkdir(parents=True)
    (d / "garden.txt").write_text("Tomatoes need full sun.\n\nWater the basil every morning.\n\n"
                                  "The compost heap is behind the shed.\n")
    (d / "sub" / "travel.md").write_text("# Trip\n\nThe train to Lyon leaves at 07:42 from platform 9.\n")
    (d / "manual.pdf").write_bytes(tiny_pdf(["Press the red button to reset.", "The warranty lasts 3 years."]))
    (d / "ignored.bin").write_bytes(b"\x00warranty\x00")
    return d


def _index(docs, tmp_path) -> SearchIndex:
    return SearchIndex(collection(docs), db_path=tmp_path / "index.sqlite")


def test_folder_passages_have_source_and_location(docs, tmp_path):
    index = _index(docs, tmp_path)
    assert index.update() == {"added": 3, "updated": 0, "removed": 0, "unchanged": 0}
    top = index.search("when does the train to Lyon leave?", k=1)[0]
    assert top.source == os.path.join("sub", "travel.md") and "07:42" in top.text
    assert top.location == "lines 1-3"  # short paragraphs are joined into one passage
    top = index.search("how long is the warranty", k=1)[0]
    assert (top.source, top.location) == ("manual.pdf", "page 2")
    top = index.search("basil watering", k=1)[0]
    assert top.source == "garden.txt" and "basil" in top.text  # "watering" stems to "water"


def test_updates_are_incremental(docs, tmp_path):
    index = _index(docs, tmp_path)
    index.update()
    (docs / "garden.txt").write_text("Plant garlic in October.\n")
    (docs / "sub" / "travel.md").unlink()
    (docs / "new.txt").write_text("The spare key is under the blue flowerpot.\n")
    assert index.update() == {"added": 1, "updated": 1, "removed": 1, "unchanged": 1}
    assert index.search("garlic")[0].source == "garden.txt"
    assert not index.search("basil") and not index.search("Lyon")
    assert index.search("spare key")[0].source == "new.txt"
    assert index.update()["unchanged"] == 3


def test_query_text_is_data_not_fts_syntax(docs, tmp_path):
    index = _index(docs, tmp_path)
    index.update()
    for q in ['NOT AND OR', '"unbalanced', 'sun*', 'text:sun', '(((', 'NEAR(sun basil)', '']:
        index.search(q)  # never an FTS5 syntax error
    assert index.search("sun*")[0].source == "garden.txt"


def test_bad_files_and_a_corrupt_index(docs, tmp_path):
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    index = _index(docs, tmp_path)
    index.update()
    assert "broken.pdf" in index.skipped and index.search("warranty")
    (tmp_path / "index.sqlite").write_bytes(b"not a database at all" * 100)
    index = _index(docs, tmp_path)  # a cache: rebuilt, not an error
    assert index.update()["added"] == 4
    with pytest.raises(LmstackError, match="not a folder"):
        collection(tmp_path / "nowhere")


def test_the_tool_reports_errors_as_results(docs):
    tool = search_tool(docs)
    assert "07:42" in tool({"query": "train to Lyon"}).content
    assert tool({"query": "train", "k": 0}).is_error
    assert tool({"query": "  "}).is_error
    assert tool({}).is_error
    assert tool({"query": "xylophone quartz"}).content == "no passage matches"


def test_shakespeare_passages_name_play_act_scene_and_speaker():
    tool = search_tool("shakespeare")
    hit = tool({"query": "O Romeo, Romeo! wherefore art thou Romeo?", "k": 1}).content
    assert hit.startswith("[1] Romeo and Juliet (Act II, Scene II, Juliet)")
    hit = tool({"query": "the quality of mercy is not strain'd", "k": 1}).content
    assert hit.startswith("[1] The Merchant of Venice (Act IV, Scene I, Portia)")
