"""Registry, build, custom_imports, config files and --cfg-options."""

from __future__ import annotations

import sys
import textwrap
import uuid

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxmutate as jm
from jaxmutate.registry import Registry, import_modules, load_config, merge_cfg_options


@pytest.fixture
def registry() -> Registry:
  return Registry("things")


class Box:
  def __init__(self, content=None, size=1):
    self.content = content
    self.size = size


def test_register_module_as_decorator_and_directly(registry):
  @registry.register_module()
  class Widget:
    pass

  assert registry.get("Widget") is Widget
  registry.register_module(name="Crate", module=Box)
  assert registry.get("Crate") is Box
  assert "Crate" in registry and "jaxmutate.Crate" in registry and "Nope" not in registry
  assert len(registry) == 2
  assert registry.names == ("Crate", "Widget")
  assert "Widget" in repr(registry)


def test_duplicate_registration_raises_key_error_unless_forced(registry):
  registry.register_module(module=Box)
  registry.register_module(module=Box)  # the same object again is harmless

  class Other:
    pass

  with pytest.raises(KeyError, match="'Box' is already registered.*force=True"):
    registry.register_module(name="Box", module=Other)
  assert registry.get("Box") is Box
  registry.register_module(name="Box", force=True, module=Other)
  assert registry.get("Box") is Other


def test_register_rejects_non_callables(registry):
  with pytest.raises(TypeError, match="classes or functions"):
    registry.register_module(name="x", module=3)


def test_models_holds_the_public_mutables_and_mutators():
  for name in (
      "OneShotMutableOP",
      "OneShotProbMutableOP",
      "DiffMutableOP",
      "DiffChoiceRoute",
      "GumbelChoiceRoute",
      "MutableValue",
      "OneShotMutableValue",
      "OneShotModuleMutator",
      "DiffModuleMutator",
      "NasMutator",
  ):
    assert jm.MODELS.get(name) is getattr(jm, name)
    assert jm.MODELS.get(f"jaxmutate.{name}") is getattr(jm, name)


@pytest.mark.parametrize("type_name", ["NasMutator", "jaxmutate.NasMutator"])
def test_build_with_and_without_the_scope_prefix(type_name):
  mutator = jm.build(dict(type=type_name, custom_group=[["a", "b"]]))
  assert isinstance(mutator, jm.NasMutator)
  assert mutator.custom_group == (("a", "b"),)


def test_build_does_not_modify_the_config():
  cfg = dict(type="OneShotModuleMutator", custom_group=[["a"]])
  jm.build(cfg)
  assert cfg == dict(type="OneShotModuleMutator", custom_group=[["a"]])


def test_build_nested_configs(registry):
  registry.register_module(module=Box)
  built = registry.build(
      dict(
          type="Box",
          content=dict(
              inner=dict(type="Box", size=2),
              items=[dict(type="Box", size=3), 4],
              pair=(dict(type="jaxmutate.Box"), "x"),
          ),
      )
  )
  assert isinstance(built.content["inner"], Box) and built.content["inner"].size == 2
  assert isinstance(built.content["items"][0], Box) and built.content["items"][1] == 4
  assert isinstance(built.content["pair"][0], Box) and built.content["pair"][1] == "x"


def test_build_default_args_fill_only_what_the_config_omits(registry):
  registry.register_module(module=Box)
  assert registry.build(dict(type="Box"), size=5).size == 5
  assert registry.build(dict(type="Box", size=2), size=5).size == 2


def test_build_a_supernet_with_config_candidates(key):
  op = jm.build(
      dict(type="OneShotMutableOP", candidates=dict(a=dict(type="OneShotMutableValue", value_list=[1, 2]), b=dict(type="MutableValue", value_list=[3])))
  )
  assert isinstance(op.candidates["a"], jm.OneShotMutableValue)


def test_build_a_flax_model_and_run_it(key):
  @jm.MODELS.register_module(force=True)
  class _RegistryTinyNet(nn.Module):
    width: int = 2

    @nn.compact
    def __call__(self, x, choices):
      return jm.OneShotMutableOP({"a": nn.Dense(self.width), "b": nn.Dense(self.width)}, name="op")(x, choices)

  try:
    net = jm.build(dict(type="jaxmutate._RegistryTinyNet", width=3))
    variables = net.init(key, jnp.ones((1, 2)), None)
    assert net.apply(variables, jnp.ones((1, 2)), {"op": jnp.int32(0)}).shape == (1, 3)
  finally:
    jm.MODELS._entries.pop("_RegistryTinyNet", None)


def test_unknown_type_raises_key_error_naming_it_and_close_matches():
  with pytest.raises(KeyError, match="'OneShotMutableOp'.*Did you mean.*OneShotMutableOP"):
    jm.build(dict(type="OneShotMutableOp"))
  with pytest.raises(KeyError, match="'jaxmutate.NasMutatr'.*NasMutator"):
    jm.build(dict(type="jaxmutate.NasMutatr"))
  with pytest.raises(KeyError, match="'Zzzzzz' is not registered"):
    jm.build(dict(type="Zzzzzz"))


@pytest.mark.parametrize("cfg, error, match", [
    (["type", "NasMutator"], TypeError, "dict"),
    ("NasMutator", TypeError, "dict"),
    (None, TypeError, "dict"),
    (dict(custom_group=None), KeyError, "'type'"),
    (dict(type=3), TypeError, "string"),
])
def test_malformed_configs_raise(cfg, error, match):
  with pytest.raises(error, match=match):
    jm.build(cfg)


def test_bad_keyword_arguments_raise_type_error_naming_the_type():
  with pytest.raises(TypeError, match="'NasMutator'.*no_such_arg"):
    jm.build(dict(type="NasMutator", no_such_arg=1))


def test_callable_type_is_used_directly():
  assert isinstance(jm.build(dict(type=Box, size=4)), Box)


# custom_imports -----------------------------------------------------------------


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
  """A tiny module on sys.path that registers a class in MODELS when imported."""
  module_name = f"jm_test_plugin_{uuid.uuid4().hex[:8]}"
  class_name = f"Plugin{uuid.uuid4().hex[:8]}"
  (tmp_path / f"{module_name}.py").write_text(
      textwrap.dedent(
          f"""
          import jaxmutate as jm

          @jm.MODELS.register_module()
          class {class_name}:
            def __init__(self, size=1):
              self.size = size
          """
      )
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  yield module_name, class_name
  sys.modules.pop(module_name, None)
  jm.MODELS._entries.pop(class_name, None)


def test_custom_imports_register_before_building(plugin_module):
  module_name, class_name = plugin_module
  with pytest.raises(KeyError, match=class_name):
    jm.build(dict(type=class_name))
  built = jm.build(dict(type=class_name, size=7, custom_imports=dict(imports=[module_name], allow_failed_imports=False)))
  assert type(built).__name__ == class_name and built.size == 7
  assert module_name in sys.modules


def test_custom_imports_accept_a_single_string(plugin_module):
  module_name, class_name = plugin_module
  assert jm.build(dict(type=class_name, custom_imports=dict(imports=module_name))).size == 1


def test_failed_custom_import_raises_unless_allowed(plugin_module):
  module_name, class_name = plugin_module
  with pytest.raises(ImportError, match="'jm_no_such_module_xyz'.*allow_failed_imports"):
    jm.build(dict(type="NasMutator", custom_imports=dict(imports=["jm_no_such_module_xyz"])))
  with pytest.warns(UserWarning, match="jm_no_such_module_xyz"):
    built = jm.build(
        dict(type=class_name, custom_imports=dict(imports=["jm_no_such_module_xyz", module_name], allow_failed_imports=True))
    )
  assert built.size == 1


@pytest.mark.parametrize(
    "custom_imports, error",
    [(["x"], TypeError), (dict(allow_failed_imports=True), TypeError), (dict(imports=["x"], other=1), KeyError), (dict(imports=[3]), TypeError)],
)
def test_malformed_custom_imports_raise(custom_imports, error):
  with pytest.raises(error):
    jm.build(dict(type="NasMutator", custom_imports=custom_imports))


def test_import_modules_directly():
  import_modules(["json", "jaxmutate.subnet"])
  with pytest.raises(ImportError):
    import_modules("jm_no_such_module_xyz")


# Config files and options -----------------------------------------------------------


def test_load_config_reads_a_python_file(tmp_path, key):
  path = tmp_path / "spos_tiny.py"
  path.write_text(
      textwrap.dedent(
          """
          import math
          _hidden = 3
          def helper():
            return 1
          model = dict(type="NasMutator", custom_group=[["a", "b"]])
          train_cfg = dict(max_epochs=2, lr=0.1 * math.sqrt(4))
          seeds = [0, 1]
          """
      )
  )
  cfg = load_config(path)
  assert cfg == dict(model=dict(type="NasMutator", custom_group=[["a", "b"]]), train_cfg=dict(max_epochs=2, lr=0.2), seeds=[0, 1])
  assert isinstance(jm.build(cfg["model"]), jm.NasMutator)
  assert jm.load_config(str(path)) == cfg


def test_load_config_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.py"):
    load_config(tmp_path / "missing.py")
  (tmp_path / "cfg.yaml").write_text("a: 1\n")
  with pytest.raises(ValueError, match=r"\.py"):
    load_config(tmp_path / "cfg.yaml")


def test_merge_cfg_options():
  cfg = dict(model=dict(type="NasMutator", custom_group=None), train=dict(lr=0.1, epochs=2), name="run")
  merged = merge_cfg_options(
      cfg,
      ["train.lr=0.05", "train.epochs=3", "model.custom_group=[['a', 'b']]", "name=spos tiny", "new.deep.key=True", "flag=none"],
  )
  assert merged == dict(
      model=dict(type="NasMutator", custom_group=[["a", "b"]]),
      train=dict(lr=0.05, epochs=3),
      name="spos tiny",
      new=dict(deep=dict(key=True)),
      flag="none",
  )
  assert cfg["train"] == dict(lr=0.1, epochs=2)  # the input is not modified
  assert merge_cfg_options(cfg, ["name=a=b"])["name"] == "a=b"


@pytest.mark.parametrize("option, error", [("train.lr", ValueError), ("=3", ValueError), ("train..lr=1", ValueError), ("name.sub=1", KeyError)])
def test_merge_cfg_options_errors(option, error):
  with pytest.raises(error):
    merge_cfg_options(dict(name="run", train=dict(lr=0.1)), [option])


def test_built_mutator_prepares_like_a_constructed_one(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      x = jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="b0")(x, choices)
      return jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="b1")(x, choices)

  variables = Net().init(key, jnp.ones((1, 2)), None)
  built = jm.build(dict(type="OneShotModuleMutator", custom_group=[["b0", "b1"]])).prepare_from_supernet(variables)
  direct = jm.OneShotModuleMutator(custom_group=[["b0", "b1"]]).prepare_from_supernet(variables)
  assert built == direct
  assert built.search_groups == {0: ("b0", "b1")}
  assert jax.tree.leaves(built) == []


def test_decorator_without_parentheses_raises_type_error(registry):
  with pytest.raises(TypeError, match=r"register_module\(\)"):

    @registry.register_module
    class Forgotten:
      pass

  assert "Forgotten" not in registry
