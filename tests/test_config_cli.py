import pytest

from lss_cl.cli import main
from lss_cl.config import TrainConfig, from_dict, load_config
from lss_cl.errors import ConfigError


def test_validation_names_field_value_and_range():
    with pytest.raises(ConfigError, match=r"^epochs: got 0; allowed range 1\.\.100000$"):
        from_dict(TrainConfig, {"epochs": 0})
    with pytest.raises(ConfigError, match=r"^model\.arch: got 'vgg'; allowed: convnet, resnet18$"):
        from_dict(TrainConfig, {"model": {"arch": "vgg"}})
    with pytest.raises(ConfigError, match=r"^data\.zca: got 'yes'; expected true or false$"):
        from_dict(TrainConfig, {"data": {"zca": "yes"}})
    with pytest.raises(ConfigError, match=r"^lr_schedule: unknown field"):
        from_dict(TrainConfig, {"lr_schedule": "cosine"})


def test_yaml_then_flags_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 0.1\nmodel:\n  width: 32\n")
    cfg = load_config(TrainConfig, path, {"lr": 0.2, "seed": None}, ["model.width=16"])
    assert (cfg.epochs, cfg.lr, cfg.model.width, cfg.seed) == (3, 0.2, 16, 0)


def test_cli_bad_value_exits_2_one_line(capsys, tiny_tree):
    assert main(["train", "--dataset", f"imagefolder:{tiny_tree}", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: epochs: got 0; allowed range 1..100000"]


def test_cli_data_info_and_train_on_tiny_tree(capsys, tiny_tree):
    assert main(["data", "info", "--dataset", f"imagefolder:{tiny_tree}"]) == 0
    out = capsys.readouterr().out
    assert "train 6, test 4" in out and "cat" in out
    assert main(["train", "--dataset", f"imagefolder:{tiny_tree}", "--epochs", "2", "--width", "4",
                 "--depth", "1", "--device", "cpu"]) == 0
    assert "test accuracy" in capsys.readouterr().out
