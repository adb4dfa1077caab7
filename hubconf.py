"""torch.hub entry points: `torch.hub.load(repo_dir, "cast_small", source="local")` (or a zoo name, pretrained=True).

Every architecture and every published checkpoint of `cast.list_models()` is an entry point; keyword
arguments go to `cast.create_model` (pretrained, checkpoint_path, device).
"""
dependencies = ["torch", "timm", "numpy", "safetensors", "huggingface_hub"]

from cast import create_model as _create_model  # noqa: E402
from cast import list_models as _list_models  # noqa: E402


def _entry(name: str):
    def entry(pretrained: bool = False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"cast.create_model({name!r}, pretrained=..., **kwargs)"
    return entry


for _name in [*_list_models(), *_list_models(pretrained=True)]:
    globals()[_name] = _entry(_name)
