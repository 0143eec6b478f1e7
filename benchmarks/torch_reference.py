"""The paper's volumetric DC-GAN in PyTorch (Gayon-Lombardo et al. 2020, Table 2): the reference porejax is
measured against, and the source of state_dicts in the converter tests. Not part of the porejax package.

Layer by layer as the paper's code (`nn.Sequential` named `main`, so state_dict keys read `main.0.weight`,
`main.1.running_mean`, ...); convolutions without bias; init N(0, 0.02), BatchNorm weight N(1, 0.02),
bias 0. Training step: binary cross-entropy from logits, real label 0.9, fake 0, generator target 0.9,
Adam (2e-5, 0.5, 0.999), one discriminator update then k = 2 generator updates, real and fake batches
through D separately. Tensors are NCDHW (PyTorch's layout); porejax is NDHWC.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PAPER_G_WIDTHS = (512, 256, 128, 64)
PAPER_D_WIDTHS = (16, 32, 64, 128)


class Generator(nn.Module):
    """z (B, latent_channels, a, a, a) -> phase probabilities (B, n_phases, D, H, W)."""

    def __init__(self, n_phases: int = 3, latent_channels: int = 100, widths: Sequence[int] = PAPER_G_WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = latent_channels
        for i, width in enumerate(widths):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [
                nn.ConvTranspose3d(c_in, width, 4, stride, pad, bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(True),
            ]
            c_in = width
        layers += [nn.ConvTranspose3d(c_in, n_phases, 4, 2, 1, bias=False), nn.Softmax(dim=1)]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """x (B, n_phases, S, S, S) -> one logit per sample (B,)."""

    def __init__(self, n_phases: int = 3, widths: Sequence[int] = PAPER_D_WIDTHS):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = n_phases
        for i, width in enumerate(widths):
            layers.append(nn.Conv3d(c_in, width, 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm3d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = width
        layers.append(nn.Conv3d(c_in, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def init_weights(module: nn.Module) -> None:
    """The paper's init (apply with `net.apply(init_weights)`)."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm3d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class TrainStep:
    """The paper's training iteration: one D update on (real, G(z)) then `k` G updates with fresh latents."""

    def __init__(
        self,
        n_phases: int = 3,
        latent_channels: int = 100,
        g_widths: Sequence[int] = PAPER_G_WIDTHS,
        d_widths: Sequence[int] = PAPER_D_WIDTHS,
        k: int = 2,
        lr: float = 2e-5,
        betas: tuple[float, float] = (0.5, 0.999),
        real_label: float = 0.9,
        seed: int = 0,
        device: str = "cpu",
    ):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.generator = Generator(n_phases, latent_channels, g_widths).to(self.device)
        self.discriminator = Discriminator(n_phases, d_widths).to(self.device)
        self.generator.apply(init_weights)
        self.discriminator.apply(init_weights)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        self.loss = nn.BCEWithLogitsLoss()
        self.latent_channels, self.k, self.real_label = latent_channels, k, real_label

    def _latent(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, self.latent_channels, 1, 1, 1, device=self.device)

    def __call__(self, real: torch.Tensor) -> dict[str, float]:
        """One iteration on a batch of one-hot crops `real` (B, n_phases, S, S, S)."""
        b = real.shape[0]
        self.discriminator.zero_grad()
        real_logits = self.discriminator(real)
        loss_real = self.loss(real_logits, torch.full_like(real_logits, self.real_label))
        loss_real.backward()
        fake = self.generator(self._latent(b))
        fake_logits = self.discriminator(fake.detach())
        loss_fake = self.loss(fake_logits, torch.zeros_like(fake_logits))
        loss_fake.backward()
        self.opt_d.step()
        for _ in range(self.k):
            self.generator.zero_grad()
            logits = self.discriminator(self.generator(self._latent(b)))
            loss_g = self.loss(logits, torch.full_like(logits, self.real_label))
            loss_g.backward()
            self.opt_g.step()
        return {"loss_d": float((loss_real + loss_fake).detach()), "loss_g": float(loss_g.detach())}
