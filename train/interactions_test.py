"""The sparse interactions table (CSR) against a small dense reference."""

import numpy as np
import pytest

from train.interactions import Interactions


def _dense(table: Interactions) -> np.ndarray:
    out = np.zeros((table.n_rows, table.n_cols), bool)
    for r in range(table.n_rows):
        out[r, table.row(r)] = True
    return out


def test_from_pairs_dedupes_and_sorts_rows():
    table = Interactions.from_pairs(np.array([2, 0, 2, 0, 2, 2]), np.array([5, 3, 1, 3, 5, 0]), n_rows=4, n_cols=6)
    assert table.n_rows == 4 and table.n_cols == 6 and table.nnz == 4
    assert [list(table.row(r)) for r in range(4)] == [[3], [], [0, 1, 5], []]
    assert list(table.indptr) == [0, 1, 1, 4, 4]
    assert list(table.lengths()) == [1, 0, 3, 0]
    assert table.indptr.dtype == np.int64 and table.indices.dtype == np.int32


def test_empty_table_and_empty_rows():
    empty = Interactions.from_pairs(np.array([], dtype=np.int64), np.array([], dtype=np.int64), n_rows=3, n_cols=5)
    assert empty.nnz == 0 and list(empty.indptr) == [0, 0, 0, 0]
    assert all(len(empty.row(r)) == 0 for r in range(3))
    assert not empty.contains(np.array([0, 2]), np.array([0, 4])).any()
    assert empty.row_ids().shape == (0,)
    assert Interactions.from_pairs([], [], n_rows=0, n_cols=0).n_rows == 0


@pytest.mark.parametrize(
    "rows, cols, problem",
    [
        ([0, 1], [0], "differ in length"),
        ([0, 3], [0, 0], r"row index outside \[0, 3\)"),
        ([-1], [0], r"row index outside"),
        ([0], [4], r"column index outside \[0, 4\)"),
        ([0], [-1], r"column index outside"),
    ],
)
def test_from_pairs_refuses_bad_indices(rows, cols, problem):
    with pytest.raises(ValueError, match=problem):
        Interactions.from_pairs(np.array(rows), np.array(cols), n_rows=3, n_cols=4)


def test_contains():
    table = Interactions.from_pairs(np.array([0, 0, 2]), np.array([1, 3, 0]), n_rows=3, n_cols=4)
    rows = np.array([0, 0, 0, 1, 2, 2])
    cols = np.array([1, 2, 3, 1, 0, 3])
    assert list(table.contains(rows, cols)) == [True, False, True, False, True, False]
    assert table.contains(rows.reshape(2, 3), cols.reshape(2, 3)).shape == (2, 3)


def test_contains_is_false_outside_the_table():
    # (0, 4) would share the key of (1, 0) and (1, -1) that of (0, 3) if the range were not checked.
    table = Interactions.from_pairs(np.array([1, 0, 2]), np.array([0, 3, 3]), n_rows=3, n_cols=4)
    assert list(table.contains(np.array([0, 1, 3, -1, 2]), np.array([4, -1, 0, 3, 3]))) == [False, False, False, False, True]


def test_row_ids_are_the_coo_rows():
    table = Interactions.from_pairs(np.array([2, 0, 2]), np.array([1, 0, 3]), n_rows=4, n_cols=4)
    assert table.row_ids().dtype == np.int32
    assert list(zip(table.row_ids(), table.indices)) == [(0, 0), (2, 1), (2, 3)]


def test_union():
    a = Interactions.from_pairs(np.array([0, 1]), np.array([1, 2]), n_rows=3, n_cols=3)
    b = Interactions.from_pairs(np.array([1, 2, 0]), np.array([2, 0, 0]), n_rows=3, n_cols=3)
    both = a.union(b)
    assert [list(both.row(r)) for r in range(3)] == [[0, 1], [2], [0]]
    with pytest.raises(ValueError, match="different shapes"):
        a.union(Interactions.from_pairs(np.array([0]), np.array([0]), n_rows=3, n_cols=4))


@pytest.mark.parametrize("seed", range(25))
def test_random_pairs_match_a_dense_reference(seed):
    rng = np.random.default_rng(seed)
    n_rows, n_cols = int(rng.integers(1, 30)), int(rng.integers(1, 30))
    n = int(rng.integers(0, 3 * n_rows * n_cols))  # often with repeats, sometimes dense
    rows, cols = rng.integers(0, n_rows, n), rng.integers(0, n_cols, n)
    reference = np.zeros((n_rows, n_cols), bool)
    reference[rows, cols] = True
    table = Interactions.from_pairs(rows, cols, n_rows, n_cols)

    assert np.array_equal(_dense(table), reference)
    assert table.nnz == reference.sum()
    assert np.array_equal(table.lengths(), reference.sum(axis=1))
    assert table.indptr[0] == 0 and table.indptr[-1] == table.nnz
    for r in range(n_rows):
        assert np.all(np.diff(table.row(r)) > 0)  # sorted, no repeats
    # COO view: the coordinates of the dense reference in row-major order.
    ref_rows, ref_cols = np.nonzero(reference)
    assert np.array_equal(table.row_ids(), ref_rows) and np.array_equal(table.indices, ref_cols)
    # Every cell, and some outside the table.
    grid_r, grid_c = np.meshgrid(np.arange(-1, n_rows + 1), np.arange(-1, n_cols + 1), indexing="ij")
    inside = (grid_r >= 0) & (grid_r < n_rows) & (grid_c >= 0) & (grid_c < n_cols)
    expected = np.zeros(grid_r.shape, bool)
    expected[inside] = reference[grid_r[inside], grid_c[inside]]
    assert np.array_equal(table.contains(grid_r, grid_c), expected)
    # Union with another random table is the elementwise or.
    m = int(rng.integers(0, n_rows * n_cols + 1))
    other_rows, other_cols = rng.integers(0, n_rows, m), rng.integers(0, n_cols, m)
    other = np.zeros_like(reference)
    other[other_rows, other_cols] = True
    union = table.union(Interactions.from_pairs(other_rows, other_cols, n_rows, n_cols))
    assert np.array_equal(_dense(union), reference | other)
