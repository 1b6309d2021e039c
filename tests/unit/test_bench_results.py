import json

from tests.support.results import KEYS, Result, save


def test_a_partial_run_keeps_the_other_figures(tmp_path):
    save(
        [Result("a", 2.0, 1.0, "ms", "≤ 3×", True), Result("b", 5.0, None, "%", "≥ 90 %", False)],
        tmp_path,
    )
    save([Result("a", 4.0, 1.0, "ms", "≤ 3×", False)], tmp_path)
    results = json.loads((tmp_path / "latest.json").read_text())["results"]
    assert [tuple(r) for r in results] == [KEYS, KEYS]
    by_name = {r["name"]: r for r in results}
    assert by_name["a"]["ours"] == 4.0 and by_name["a"]["ratio"] == 4.0
    assert by_name["b"]["ratio"] is None
    table = (tmp_path / "latest.md").read_text()
    assert "| a | 4 | 1 | 4 | ms | ≤ 3× | **no** |" in table
    assert "| b | 5 |  |  | % | ≥ 90 % | **no** |" in table
