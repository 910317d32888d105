"""Every registered objective (and a hybrid): finite, differentiable, label-aware, option-sensitive."""
import pytest
import torch
import torch.nn.functional as F

from cmr_demo.train.heads import HeadConfig, Heads
from cmr_demo.train.objectives import OBJECTIVES, STUDY, build_objective, expand_objectives, list_objectives

C, D = 5, 32
NAMES = list_objectives() + ["pcl+0.5*tl"]


def batch(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % C
    img = F.normalize(torch.randn(n, D, generator=g), dim=1)
    txt = F.normalize(torch.randn(n, D, generator=g), dim=1)
    return img, txt, labels


def test_registry_holds_the_study_and_the_proxies():
    assert set(STUDY) | {"proxy-nca", "proxy-anchor"} == set(OBJECTIVES)
    assert expand_objectives("all") == list_objectives()
    assert expand_objectives("pcl, tl,pcl") == ["pcl", "tl"]


@pytest.mark.parametrize("bad", ["nope", "pcl+nope", "pcl+", "2*", "all+pcl"])
def test_unknown_objective_lists_valid_names(bad):
    with pytest.raises(ValueError, match=r"valid: .*tl-semihard.*pcl"):
        build_objective(bad, C, D) if "+" in bad or "*" in bad else expand_objectives(bad)


@pytest.mark.parametrize("name", NAMES)
def test_finite_and_every_head_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    heads = Heads(HeadConfig(image_dim=12, text_dim=9, hidden_dim=16, embed_dim=D))
    objective = build_objective(name, C, D)
    labels = torch.arange(30) % C
    out = objective(heads.encode_image(torch.randn(30, 12)), heads.encode_text(torch.randn(30, 9)), labels)
    assert set(out) >= {"loss"} and len(out) >= 2
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for pname, p in list(heads.named_parameters()) + list(objective.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_aligned_labels_score_lower_than_shuffled(name):
    """Fit free embeddings to the labels, then the same embeddings with shuffled labels cost more."""
    torch.manual_seed(0)
    objective = build_objective(name, C, D)
    img0, txt0, labels = batch()
    img, txt = img0.clone().requires_grad_(), txt0.clone().requires_grad_()
    opt = torch.optim.Adam([img, txt, *objective.parameters()], lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        objective(F.normalize(img, dim=1), F.normalize(txt, dim=1), labels)["loss"].backward()
        opt.step()
    with torch.no_grad():
        a, b = F.normalize(img, dim=1), F.normalize(txt, dim=1)
        aligned = objective(a, b, labels)["loss"]
        shuffled = objective(a, b, labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))])[
            "loss"
        ]
    assert aligned < shuffled


@pytest.mark.parametrize("name", list_objectives())
def test_each_option_changes_the_value(name):
    img, txt, labels = batch(seed=3)
    for key, default in OBJECTIVES[name].defaults.items():
        # cl's form changes how its margin acts, so it shows only with a margin that acts on these unit vectors
        held = {"margin": 2.0} if (name, key) == ("cl", "form") else {}
        torch.manual_seed(0)
        base = build_objective(name, C, D, held)(img, txt, labels)["loss"]
        torch.manual_seed(0)  # same learned-parameter init, so only the option differs
        changed = build_objective(name, C, D, {**held, key: default * 4 + 1})(img, txt, labels)["loss"]
        assert not torch.isclose(base, changed), f"{name}: option {key} has no effect"


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="belong to no part"):
        build_objective("pcl", C, D, {"margin": 0.3})
    assert build_objective("pcl+tl", C, D, {"margin": 0.3}).parts[1].options["margin"] == 0.3


@pytest.mark.parametrize("name", NAMES)
def test_masks_drop_rows_and_empty_modalities_stay_finite(name):
    img, txt, labels = batch()
    objective = build_objective(name, C, D)
    keep = torch.arange(len(labels)) < 20
    masked = objective(img, txt, labels, text_mask=keep)["loss"]
    no_images = objective(img, txt, labels, image_mask=torch.zeros(len(labels), dtype=torch.bool))["loss"]
    assert torch.isfinite(masked) and torch.isfinite(no_images)
    none = objective(img, txt, labels, text_mask=torch.zeros(len(labels), dtype=torch.bool))["loss"]
    assert torch.isfinite(none)


def test_masking_equals_removing_rows():
    img, txt, labels = batch()
    objective = build_objective("tl", C, D)
    keep = torch.arange(len(labels)) % 3 != 0
    via_mask = objective(img, txt, labels, text_mask=keep)["loss"]
    # reference: triplet computed by hand on the kept texts
    d2 = torch.cdist(img, txt[keep]) ** 2
    same = labels[:, None] == labels[keep][None, :]
    hinge = torch.relu(0.2 + d2[:, :, None] - d2[:, None, :])
    valid = same[:, :, None] & ~same[:, None, :]
    d2t = d2.T
    hinge_t = torch.relu(0.2 + d2t[:, :, None] - d2t[:, None, :])
    valid_t = same.T[:, :, None] & ~same.T[:, None, :]
    expected = hinge[valid].mean() + hinge_t[valid_t].mean()
    assert torch.allclose(via_mask, expected, atol=1e-5)


def test_semi_hard_uses_only_semi_hard_negatives():
    """A triplet whose negative is already beyond the margin, or closer than the positive, is excluded."""
    anchor = torch.tensor([[1.0, 0.0]])
    others = F.normalize(torch.tensor([[1.0, 0.05], [1.0, 0.2], [0.0, 1.0], [1.0, 0.0]]), dim=1)
    la, lo = torch.tensor([0]), torch.tensor([0, 1, 1, 1])  # positive, semi-hard neg, easy neg, hard neg
    semi = build_objective("tl-semihard", 2, 2)._one_way(anchor, la, others, lo)
    d = (anchor - others).pow(2).sum(1)
    assert torch.isclose(semi, 0.2 + d[0] - d[1])  # only the semi-hard negative counts
    full = build_objective("tl", 2, 2)._one_way(anchor, la, others, lo)
    assert torch.isclose(full, torch.relu(0.2 + d[0] - d[1:]).mean())


def test_prototypes_are_fixed_and_saved():
    obj = build_objective("pcl", C, D)
    assert "prototypes" in obj.state_dict() and not list(obj.parameters())
    assert torch.allclose(obj.prototypes.norm(dim=1), torch.ones(C))


def brute_force_triplet(anchor, ya, other, yo, margin, semi_hard):
    d2 = torch.cdist(anchor, other) ** 2
    same = ya[:, None] == yo[None, :]
    d_ap, d_an = d2[:, :, None], d2[:, None, :]
    valid = same[:, :, None] & ~same[:, None, :]
    if semi_hard:
        valid = valid & (d_an > d_ap) & (d_an < d_ap + margin)
    hinge = torch.relu(margin + d_ap - d_an)
    return (hinge * valid).sum() / valid.sum().clamp(min=1)


@pytest.mark.parametrize("name", ["tl", "tl-semihard"])
@pytest.mark.parametrize("seed,margin", [(0, 0.2), (1, 0.5), (2, 1.5)])
def test_fast_triplet_equals_brute_force_in_value_and_gradient(name, seed, margin):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(23, 6, generator=g), dim=1).requires_grad_()
    o = F.normalize(torch.randn(29, 6, generator=g), dim=1).requires_grad_()
    ya, yo = torch.randint(0, 3, (23,), generator=g), torch.randint(0, 3, (29,), generator=g)
    fast = build_objective(name, 3, 6, {"margin": margin})._one_way(a, ya, o, yo)
    slow = brute_force_triplet(a, ya, o, yo, margin, name == "tl-semihard")
    assert torch.allclose(fast, slow, atol=1e-5)
    ga = torch.autograd.grad(fast, (a, o))
    gb = torch.autograd.grad(slow, (a, o))
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5)
