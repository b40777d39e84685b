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
    declared = SignatureDecl(
        inputs=(TensorDecl("k", "DT_INT32", (-1,)),),
        outputs=(TensorDecl("ids", "DT_STRING", (-1, -1)), TensorDecl("scores", "DT_DOUBLE", (-1, 5))),
    )
    assert declared.input("k") == TensorDecl("k", "DT_INT32", (-1,)) and declared.input_names == ("k",)
    assert declared.output("scores").numpy_dtype == "float64" and declared.output("scores").rank == 2
    assert declared.output("ids").is_string and declared.output_names == ("ids", "scores")
    assert declared.has_output("ids") and not declared.has_output("k")
    assert str(declared.output("scores")) == "scores DT_DOUBLE [-1, 5]"
    with pytest.raises(KeyError, match=r"no output 'nope' declared \(declared: \['ids', 'scores'\]\)"):
        declared.output("nope")
    assert contract.signature(contract.RECOMMEND_SIGNATURE) is contract.SIGNATURES[contract.RECOMMEND_SIGNATURE]
    with pytest.raises(KeyError, match="no signature 'nope' in client/contract.py"):
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
