"""torch.hub entry points: `torch.hub.load(repo_dir, NAME, source="local")`.

Every architecture and every published checkpoint of `cast.list_models()` is an entry point. A published
name (`cast_base_moco_in1k`) loads its official weights unless `pretrained=False` is passed; an
architecture (`cast_small`) has random weights unless `pretrained=True`. Keyword arguments go to
`cast.create_model` (pretrained, device).
"""
dependencies = ["torch", "timm", "numpy", "safetensors", "huggingface_hub"]

from cast import create_model as _create_model  # noqa: E402
from cast import list_models as _list_models  # noqa: E402


def _entry(name: str, published: bool):
    def entry(pretrained: bool = published, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"cast.create_model({name!r}, pretrained={published}, **kwargs)"
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name, published=False)
for _name in _list_models(pretrained=True):
    globals()[_name] = _entry(_name, published=True)
