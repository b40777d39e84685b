"""The declaration helpers: a bad declaration fails at import, look-ups name what is declared."""

import pytest

from common import contract
from common.contract import SignatureDecl, TensorDecl


def test_every_declared_dtype_maps_to_numpy_and_every_input_has_a_batch_dimension():
    for name, declared in contract.SIGNATURES.items():
        for t in (*declared.inputs, *declared.outputs):
            assert t.dtype in contract.NUMPY_DTYPES, (name, t)
        assert all(t.rank >= 1 and t.shape[0] == -1 for t in declared.inputs), name


def test_look_ups_name_what_is_declared():
    recommend = contract.signature(contract.RECOMMEND_SIGNATURE)
    assert recommend.input(contract.K) == TensorDecl(contract.K, "DT_INT32", (-1,))
    assert recommend.output(contract.SCORES).numpy_dtype == "float32" and recommend.output(contract.SCORES).rank == 2
    assert recommend.has_output(contract.MOVIE_TITLES) and not recommend.has_output(contract.PREDICTED_RATING)
    assert str(recommend.output(contract.SCORES)) == f"{contract.SCORES} DT_FLOAT [-1, -1]"
    with pytest.raises(KeyError, match=r"no output 'nope' declared \(declared: \['movie_ids'"):
        recommend.output("nope")
    with pytest.raises(KeyError, match="no signature 'nope' in common/contract.py"):
        contract.signature("nope")


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="dtype 'DT_HALF' is not one of"):
        TensorDecl("x", "DT_HALF", (-1,))
    with pytest.raises(ValueError, match="below -1"):
        TensorDecl("x", "DT_FLOAT", (-2,))
    with pytest.raises(ValueError, match="an output name is declared twice"):
        SignatureDecl(inputs=(), outputs=(TensorDecl("x", "DT_FLOAT", (-1,)), TensorDecl("x", "DT_INT32", (-1,))))


def test_shape_matches():
    assert contract.shape_matches((-1, 64), (3, 64)) and contract.shape_matches((-1, -1), (-1, 7))
    assert not contract.shape_matches((-1, 64), (3, 32)) and not contract.shape_matches((-1,), (3, 1))
    assert not contract.shape_matches((-1,), None)
