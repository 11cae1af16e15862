"""Relation Network (Sung et al. 2018): learn the comparison itself.

Where a Siamese network fixes the form of its metric (a weighted L1 distance) and
Prototypical Networks fix theirs (squared Euclidean), a Relation Network *learns* it: an
embedding module f turns each image into a feature map, the feature maps of a query and
of a class are concatenated along the channels, and a small CNN g (the relation module)
outputs a relation score in (0, 1):

    r_{q,c} = g([f(x_q), sum_{k} f(x_{c,k})])        (sum over the class's K shots, as in the paper)

Training regresses r to the one-hot match (1 for the query's class, 0 otherwise) with mean
squared error, using Adam at 1e-3. Omniglot architecture: embedding = 4 blocks of
3x3 conv (64) + BN + ReLU, with 2x2 max-pool after the first two only (28x28 -> 64x5x5);
relation = 2 such blocks, each pooled (-> 64x1x1), then FC 64 -> 8 -> 1 with a sigmoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..budget import pick
from ..data.episodes import Episode
from ..learner import FewShotLearner, Recipe, check_task
from ..nets import conv_block


class RelationNet(FewShotLearner):
    """Embedding module + relation module; relation scores are returned as logits (pre-sigmoid).

    The embedding is Conv-4's four blocks, not :class:`mlcore.nets.Conv4`: Sung et al. leave the first two
    convs unpadded and the last two blocks unpooled, so it returns a 64x5x5 feature map for the relation
    module to compare, not a vector (its state-dict names, ``embedding.{i}``, are those of the records).
    """

    method = "relationnet"

    def __init__(self, hidden: int = 64, relation_hidden: int = 8, in_channels: int = 1, image_size: int = 28):
        super().__init__(hidden=hidden, relation_hidden=relation_hidden, in_channels=in_channels,
                         image_size=image_size)
        # unpadded convs in the pooled blocks (28 -> 26 -> 13 -> 11 -> 5), padded in the others
        self.embedding = nn.Sequential(conv_block(in_channels, hidden, "max", padding=0),
                                       conv_block(hidden, hidden, "max", padding=0),
                                       conv_block(hidden, hidden, "none"), conv_block(hidden, hidden, "none"))
        self.relation_conv = nn.Sequential(conv_block(2 * hidden, hidden, "max"), conv_block(hidden, hidden, "max"))
        with torch.no_grad():
            fmap = self.embedding(torch.zeros(1, in_channels, image_size, image_size))
            rel = self.relation_conv(torch.zeros(1, 2 * hidden, *fmap.shape[-2:]))
        self.feature_shape, self.image_size, self.in_channels = tuple(fmap.shape[1:]), image_size, in_channels
        self.relation_fc = nn.Sequential(nn.Linear(rel.numel(), relation_hidden), nn.ReLU(),
                                         nn.Linear(relation_hidden, 1))
        # The FC layer has only 8 ReLU units: if they all die the relation score is a constant and
        # training is stuck at loss (N-1)/N^2 for good (we saw it once in 5-way 5-shot). Small
        # weights and a bias of 1, as in the authors' code, keep every unit alive at the start.
        for layer in self.relation_fc:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.ones_(layer.bias)

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        # Sung et al.'s code: train with the test's N and K and 19/15/10/5 queries per class for
        # 5w1s/5w5s/20w1s/20w5s; Adam 1e-3 halved every 100,000 episodes, gradient norm clipped at 0.5,
        # 1,000,000 episodes; each episode turned by one random multiple of 90 degrees (the 1,200
        # training characters, rotations as augmentation rather than as classes).
        # extra['channels_last']: NHWC convolutions on the CPU, the same function ~1.4x faster per episode
        # (benchmarks/relation_pairs.py); it is no part of the run's identity, so runs resume across it.
        queries = {(5, 1): 19, (5, 5): 15, (20, 1): 10, (20, 5): 5}.get((ways, shots), 5 if ways >= 20 else 15)
        return Recipe(ways=ways, shots=shots, queries=pick(budget, smoke=min(queries, 5), full=queries),
                      meta_batch=1, steps=pick(budget, smoke=40, full=1_000_000, cpu=40_000), lr=1e-3,
                      lr_step=pick(budget, smoke=None, full=100_000), lr_gamma=0.5, grad_clip=0.5,
                      episode_rotation=True, test_ways=ways, test_shots=shots,
                      model=pick(budget, smoke={"hidden": 32}, full={"hidden": 64}), extra={"channels_last": True},
                      **pick(budget, smoke={}, full={}, cpu={"train_split": "vinyals/train",
                                                             "val_split": "vinyals/val", "val_every": 2000}))

    @property
    def input_size(self) -> int:
        """The side its embedding was built for (``image_size``)."""
        return self.image_size

    def _check_images(self, x: torch.Tensor) -> None:
        want = (self.in_channels, self.image_size, self.image_size)
        if tuple(x.shape[-3:]) != want:
            raise ValueError(f"RelationNet was built for images {want}, got {tuple(x.shape[-3:])}; resize with "
                             f"mlcore.data.preprocess(images, size={self.image_size})")

    def relation_logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                        ways: int) -> torch.Tensor:
        """Batched: (B, n, C, H, W), (B, n), (B, m, C, H, W) -> pre-sigmoid relation scores (B, m, N)."""
        self._check_images(support_x)
        self._check_images(query_x)
        b, n, m = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        # two passes, as Sung et al.'s code: under batch statistics (training, or their transductive test) the
        # support set and the queries are each normalised with their own batch's
        fs, fq = self.embedding(support_x.flatten(0, 1)), self.embedding(query_x.flatten(0, 1))
        fs, fq = fs.reshape(b, n, -1), fq.view(b, m, *fq.shape[1:])  # reshape: channels_last maps copy here
        onehot = F.one_hot(support_y.long(), ways).to(fs.dtype)  # (B, n, N)
        fc = (onehot.transpose(1, 2) @ fs).view(b, ways, *fq.shape[2:])  # sum of each class's shots
        z = self.pair_conv(fc, fq)  # g's first convolution of every (query, class) pair: (B, m, N, C, h, w)
        # the rest of g: its first block after the convolution (batch norm, ReLU, pooling), then its second block
        r = self.relation_conv[1](self.relation_conv[0][1:](z.flatten(0, 2))).flatten(1)
        return self.relation_fc(r).view(b, m, ways)

    def pair_conv(self, fc: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        """g's first convolution applied to every pair [class map; query map] stacked along the channels.

        (B, N, C, h, w) class maps and (B, m, C, h, w) query maps -> (B, m, N, C', h', w'). A convolution is
        linear in its input, so convolving the stacked pair equals convolving the class map with the first
        half of the kernel plus the query map with the second half. Each class and each query is therefore
        convolved once, and the m x N pairs only add: at 20 ways with 10 queries per class that is 220
        convolutions instead of 4,000, and a 20-way training episode runs 1.4-1.9x faster on one CPU thread
        (``benchmarks/relation_pairs.py``; ``tests/test_metric_relation.py`` checks it against the stacked pairs).
        """
        conv = self.relation_conv[0][0]
        b, ways, c = fc.shape[:3]
        m = fq.shape[1]
        zc = F.conv2d(fc.flatten(0, 1), conv.weight[:, :c], None, conv.stride, conv.padding)
        zq = F.conv2d(fq.flatten(0, 1), conv.weight[:, c:], conv.bias, conv.stride, conv.padding)
        return zc.view(b, 1, ways, *zc.shape[1:]) + zq.view(b, m, 1, *zq.shape[1:])

    def meta_loss(self, episodes: Episode) -> tuple[torch.Tensor, dict]:
        logits = self.relation_logits(episodes.support_x, episodes.support_y, episodes.query_x, episodes.ways)
        target = F.one_hot(episodes.query_y, episodes.ways).to(logits.dtype)
        loss = F.mse_loss(torch.sigmoid(logits), target)  # the paper's loss: MSE of relation scores to one-hot
        acc = (logits.argmax(-1) == episodes.query_y).float().mean()
        return loss, {"acc": acc.detach()}

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        support_x, query_x = self.as_input(support_x), self.as_input(query_x)  # raw drawings of any size
        ways = check_task(support_x, support_y, query_x)
        return self.relation_logits(support_x[None], support_y[None], query_x[None], ways)[0]

    def predict_batch(self, episodes: Episode) -> torch.Tensor:
        return self.relation_logits(episodes.support_x, episodes.support_y, episodes.query_x, episodes.ways)
