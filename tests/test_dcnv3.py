"""rsbench's DCNv3 core (:mod:`rsbench.models.ops.dcnv3`) against the official one.

Known answers: ``tests/data/internimage/dcnv3_core.pt`` holds random inputs, offsets, masks and
output gradients with the outputs and input/offset/mask gradients of the official
``dcnv3_core_pytorch`` (github.com/ViTAE-Transformer/MTP, commit
13cc2b71825d0ad5c6b15a21fc7df6abcbe005cc, ``RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/
backbones/ops_dcnv3/functions/dcnv3_func.py``, identical in every task folder), recorded with

    python scripts/record_internimage_known_answers.py \\
        --official-root <MTP checkout>/RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones

(the exact command and commit are also stored in the file's ``meta``). The official code cannot
be imported here (it needs its compiled extension and mm* packages), hence the recording.
The gradient checks run in float64 against finite differences and against
:func:`dcnv3_core_reference`, the plain autograd formulation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsbench.models.ops.dcnv3 import DCNv3, dcnv3_core, dcnv3_core_reference

DATA = Path(__file__).parent / "data" / "internimage" / "dcnv3_core.pt"
KNOWN = torch.load(DATA, weights_only=False)
CASES = {c["name"]: c for c in KNOWN["cases"]}


def _positional(args: dict) -> tuple:
    k, s, p, d = args["kernel"], args["stride"], args["pad"], args["dilation"]
    return (k, k, s, s, p, p, d, d, args["group"], args["group_channels"], args["offset_scale"], args["remove_center"])


def _run(fn, case, **kw):
    leaves = [case[k].clone().requires_grad_() for k in ("input", "offset", "mask")]
    out = fn(*leaves, *_positional(case["args"]), **kw)
    out.backward(case["grad_output"])
    return out.detach(), [t.grad for t in leaves]


def test_known_answers_recorded_from_the_official_code():
    assert KNOWN["meta"]["official_commit"] == "13cc2b71825d0ad5c6b15a21fc7df6abcbe005cc"
    assert "record_internimage_known_answers.py" in KNOWN["meta"]["command"]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("recompute", [False, True])
def test_core_matches_official(name, recompute):
    case = CASES[name]
    out, (g_in, g_off, g_mask) = _run(dcnv3_core, case, recompute=recompute)
    assert out.shape == case["output"].shape
    torch.testing.assert_close(out, case["output"], atol=1e-5, rtol=0)
    torch.testing.assert_close(g_in, case["grad_input"], atol=1e-5, rtol=0)
    torch.testing.assert_close(g_off, case["grad_offset"], atol=1e-5, rtol=0)
    torch.testing.assert_close(g_mask, case["grad_mask"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_formulation_matches_official(name):
    case = CASES[name]
    out, grads = _run(dcnv3_core_reference, case)
    torch.testing.assert_close(out, case["output"], atol=1e-5, rtol=0)
    for g, key in zip(grads, ("grad_input", "grad_offset", "grad_mask")):
        torch.testing.assert_close(g, case[key], atol=1e-5, rtol=0)


def test_inference_path_matches_official():
    """Without autograd the points are sampled one at a time (no P-fold tensor)."""
    for case in CASES.values():
        with torch.no_grad():
            out = dcnv3_core(case["input"], case["offset"], case["mask"], *_positional(case["args"]))
        torch.testing.assert_close(out, case["output"], atol=1e-5, rtol=0)


def test_partial_requires_grad():
    """Only the input needs a gradient (frozen offsets/masks), or only the mask."""
    case = CASES["xl_like"]
    x = case["input"].clone().requires_grad_()
    dcnv3_core(x, case["offset"], case["mask"], *_positional(case["args"])).backward(case["grad_output"])
    torch.testing.assert_close(x.grad, case["grad_input"], atol=1e-5, rtol=0)
    m = case["mask"].clone().requires_grad_()
    dcnv3_core(case["input"], case["offset"], m, *_positional(case["args"])).backward(case["grad_output"])
    torch.testing.assert_close(m.grad, case["grad_mask"], atol=1e-5, rtol=0)


def _double_case(seed=0, N=1, H=4, W=5, G=2, Cg=3, P=9):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, H, W, G * Cg, generator=g, dtype=torch.float64)
    off = torch.randn(N, H, W, G * P * 2, generator=g, dtype=torch.float64) * 1.5
    mask = torch.randn(N, H, W, G, P, generator=g, dtype=torch.float64).softmax(-1).reshape(N, H, W, G * P)
    return [t.requires_grad_() for t in (x, off, mask)]


@pytest.mark.parametrize("recompute", [False, True])
def test_gradcheck_float64(recompute):
    leaves = _double_case()
    fn = lambda x, o, m: dcnv3_core(x, o, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 2.0, 0, recompute=recompute)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_gradients_equal_plain_reference_float64():
    leaves = _double_case(seed=1, N=2, H=6, W=7, G=3, Cg=4)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 3, 4, 2.0, 0)
    go = torch.randn(2, 6, 7, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = torch.autograd.grad(dcnv3_core(*leaves, *args), leaves, go)
    ref = torch.autograd.grad(dcnv3_core_reference(*leaves, *args), leaves, go)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_shape_errors():
    x = torch.zeros(1, 4, 4, 8)
    with pytest.raises(ValueError, match="channels"):
        dcnv3_core(x, torch.zeros(1, 4, 4, 36), torch.zeros(1, 4, 4, 18), 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0)
    with pytest.raises(ValueError, match="offset shape"):
        dcnv3_core(x, torch.zeros(1, 4, 4, 35), torch.zeros(1, 4, 4, 18), 3, 3, 1, 1, 1, 1, 1, 1, 2, 4, 1.0, 0)
    with pytest.raises(ValueError, match="remove_center"):
        dcnv3_core(x, torch.zeros(1, 4, 4, 32), torch.zeros(1, 4, 4, 16), 2, 2, 1, 1, 1, 1, 1, 1, 2, 4, 1.0, 1)


def test_module_parameter_names_and_init():
    m = DCNv3(channels=32, group=2, offset_scale=2.0)
    names = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert names == {
        "dw_conv.0.weight": (32, 1, 3, 3), "dw_conv.0.bias": (32,),
        "dw_conv.1.1.weight": (32,), "dw_conv.1.1.bias": (32,),
        "offset.weight": (36, 32), "offset.bias": (36,),
        "mask.weight": (18, 32), "mask.bias": (18,),
        "input_proj.weight": (32, 32), "input_proj.bias": (32,),
        "output_proj.weight": (32, 32), "output_proj.bias": (32,),
    }
    assert not m.offset.weight.any() and not m.mask.weight.any()
    y = m(torch.randn(2, 5, 6, 32))
    assert y.shape == (2, 5, 6, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    case = CASES["xl_like"]
    cpu_out, cpu_grads = _run(dcnv3_core, case)
    gpu_case = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in case.items()}
    out, grads = _run(dcnv3_core, gpu_case)
    torch.testing.assert_close(out.cpu(), cpu_out, atol=1e-5, rtol=0)
    for a, b in zip(grads, cpu_grads):
        torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=0)
