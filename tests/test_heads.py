"""The paper's heads: shapes, unit norm, standardisation buffers, and the CPU dropout's masks."""
import numpy as np
import torch

from cmr_demo.train.heads import Dropout, HeadConfig, Heads


def test_heads_give_unit_vectors_and_standardise_inside():
    torch.manual_seed(0)
    heads = Heads(HeadConfig(image_dim=12, text_dim=7, hidden_dim=16, embed_dim=24, standardize=True)).eval()
    img, txt = torch.randn(50, 12) * 3 + 5, torch.randn(50, 7)
    heads.fit_standardization(img, txt)
    out = heads.encode_image(img)
    assert out.shape == (50, 24)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(50))
    torch.testing.assert_close(heads.image_mean, img.mean(0))
    assert heads.encode_text(txt).shape == (50, 24)


def test_dropout_rate_scale_gradient_and_eval_identity():
    drop = Dropout(0.1).train()
    drop.rng = np.random.default_rng(1)
    x = torch.ones(400, 1000, requires_grad=True)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003  # 400k draws: the standard error is 0.0005
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))  # inverted dropout: mean kept
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.9)  # gradient only through kept units
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_reseeding_fixes_the_masks_and_the_two_heads_differ():
    heads = Heads(HeadConfig(image_dim=8, text_dim=8, hidden_dim=8, embed_dim=64, dropout=0.5)).train()
    x = torch.randn(30, 8)
    heads.reseed_dropout(7)
    a_img, a_txt = heads.encode_image(x), heads.encode_text(x)
    heads.reseed_dropout(7)
    assert torch.equal(heads.encode_image(x), a_img) and torch.equal(heads.encode_text(x), a_txt)
    heads.reseed_dropout(8)
    assert not torch.equal(heads.encode_image(x), a_img)
    masks = [m.rng.random(5) for m in heads.modules() if isinstance(m, Dropout)]
    assert len(masks) == 2 and not np.array_equal(*masks)


def test_state_dict_keys_match_torchs_dropout_layout():
    """Checkpoints written with nn.Dropout in the heads load unchanged (Dropout holds no tensors)."""
    cfg = HeadConfig(image_dim=5, text_dim=4, hidden_dim=6, embed_dim=7)
    old = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.GELU(), torch.nn.Linear(6, 7), torch.nn.Dropout(0.1))
    assert set(old.state_dict()) == {k[len("image."):] for k in Heads(cfg).state_dict() if k.startswith("image.")}
