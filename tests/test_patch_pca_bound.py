"""scripts/patch_pca_bound.py: a linear patch code is exact with all dimensions and degrades with fewer."""
import torch

from scripts.patch_pca_bound import linear_code_psnr


def test_full_rank_code_is_exact_and_fewer_dims_lose():
    gen = torch.Generator().manual_seed(0)
    train, test = torch.rand(4, 3, 2, 8, 8, generator=gen) * 2 - 1, torch.rand(2, 3, 2, 8, 8, generator=gen) * 2 - 1
    full = linear_code_psnr(train, test, 2, 12)  # 2x2x3 = 12 numbers: the basis spans every patch
    assert full > 60
    assert linear_code_psnr(train, test, 2, 2) < linear_code_psnr(train, test, 2, 6) < full
