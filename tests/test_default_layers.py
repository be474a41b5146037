"""Default layers of transformers and CNNs (the repeated block list wherever it sits, the final
norm, the logits) and layer globs that stay within one dotted level (issue 11, item 4).

Models are random-init from tiny configs, built offline; timm and Hugging Face models only
when those packages are importable."""

import pytest
import torch
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.extraction import default_layers, layer_matches, list_layers, select_layers


def images(n=2, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def tokens(n=2, length=8, vocab=50):
    ids = torch.randint(1, vocab, (n, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # padding at the end of the first sequence
    return {"input_ids": ids, "attention_mask": mask}


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, h):
        return h + self.mlp(self.norm(h))


class Encoder(nn.Module):
    def __init__(self, width, depth):
        super().__init__()
        self.layer = nn.ModuleList(Block(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width)

    def forward(self, h):
        for block in self.layer:
            h = block(h)
        return self.final_norm(h)


class Backbone(nn.Module):
    """Like Hugging Face's BertModel: embeddings, then the stack two levels below the root."""

    def __init__(self, width, depth):
        super().__init__()
        self.embeddings = nn.Embedding(50, width)
        self.encoder = Encoder(width, depth)

    def forward(self, input_ids):
        return (self.encoder(self.embeddings(input_ids)),)  # a tuple, as HF models return


class TextClassifier(nn.Module):
    def __init__(self, width=8, depth=3, classes=3):
        super().__init__()
        self.backbone = Backbone(width, depth)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(width, classes)

    def forward(self, input_ids, attention_mask=None):
        hidden = self.backbone(input_ids)[0]
        return self.classifier(self.dropout(hidden[:, 0]))


def test_globs_stay_within_one_dotted_level():
    assert layer_matches("blocks.3", "blocks.*")
    assert not layer_matches("blocks.3.attn.qkv", "blocks.*")
    assert layer_matches("blocks.3.attn.qkv", "blocks.**")
    assert layer_matches("blocks.3.attn.qkv", "blocks.*.attn.*")
    assert layer_matches("layer1", "layer*") and not layer_matches("layer1.0", "layer*")
    assert layer_matches("layer2.1", "layer?.?") and not layer_matches("layer2.1.conv1", "layer?.?")
    assert layer_matches("encoder.layers.ln_1", "**.ln_*") and not layer_matches("ln_1", "**.ln_*")
    assert layer_matches("h.2", "h.[0-2]") and not layer_matches("h.3", "h.[0-2]")
    assert layer_matches("h.3", "h.[!0-2]") and not layer_matches("h.1", "h.[!0-2]")
    assert layer_matches("relu#2", "relu*") and layer_matches("a.b", "a.b")
    assert not layer_matches("axb", "a.b")  # a dot is a dot, not a regex wildcard


def test_select_layers_globs_on_a_nested_model():
    model, x = TextClassifier().eval(), tokens()
    names = select_layers(model, x, ["backbone.encoder.layer.*"])
    assert names == [f"backbone.encoder.layer.{i}" for i in range(3)]
    deep = select_layers(model, x, ["backbone.encoder.layer.**"])
    assert "backbone.encoder.layer.0.mlp.0" in deep and set(names) < set(deep)
    with pytest.raises(InputError, match="matches no layer"):
        select_layers(model, x, ["backbone.*.layer"])  # `*` does not cross the dot of `encoder.layer`


def test_default_layers_find_a_stack_two_levels_down():
    model = TextClassifier().eval()
    names = default_layers(model, tokens())
    blocks = [f"backbone.encoder.layer.{i}" for i in range(3)]
    # the blocks, the final norm (the backbone's own output repeats it), the logits
    assert names == [*blocks, "backbone.encoder.final_norm", "logits"]


def test_default_layers_of_a_torchvision_vision_transformer():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    names = default_layers(model, images())
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(3)]
    assert names == ["conv_proj", *blocks, "encoder.ln", "logits"]
    assert select_layers(model, images(), ["encoder.layers.*"]) == blocks


def test_default_layers_of_a_timm_vit_keep_the_last_block():
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=3, num_classes=5
    ).eval()
    names = default_layers(model, images())
    assert names == ["patch_embed", "blocks.0", "blocks.1", "blocks.2", "norm", "logits"]
    assert select_layers(model, images(), ["blocks.*"]) == ["blocks.0", "blocks.1", "blocks.2"]


def test_a_norm_after_a_two_block_list_does_not_hide_the_last_block():
    """Two blocks are no stack (rule 2 wants 3), but a norm after a block still starts its own
    unit: timm's ViT at depth 2 lost `blocks.1` behind `norm`."""
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=5
    ).eval()
    assert default_layers(model, images()) == ["patch_embed", "blocks.0", "blocks.1", "norm", "logits"]


def test_default_layers_of_a_timm_resnet():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=5).eval()
    names = default_layers(model, images())
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert names == ["act1", "maxpool", *blocks, "global_pool", "logits"]


def _hf_quiet():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def test_default_layers_of_a_hugging_face_bert():
    transformers = _hf_quiet()
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config).eval()
    names = default_layers(model, tokens())
    assert names == [f"bert.encoder.layer.{i}" for i in range(3)] + ["logits"]


def test_default_layers_of_a_hugging_face_gpt2():
    transformers = _hf_quiet()
    config = transformers.GPT2Config(
        vocab_size=50, n_embd=16, n_layer=3, n_head=2, n_positions=16, num_labels=3,
        pad_token_id=0, bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    model = transformers.GPT2ForSequenceClassification(config).eval()
    names = default_layers(model, tokens())
    blocks = [f"transformer.h.{i}" for i in range(3)]
    assert names[:4] == [*blocks, "transformer.ln_f"] and names[-1] == "logits"
    listed = {layer.name for layer in list_layers(model, tokens())}
    assert set(names) <= listed
