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
    dict(
      type="OneShotMutableOP",
      candidates=dict(
        a=dict(type="OneShotMutableValue", value_list=[1, 2]), b=dict(type="MutableValue", value_list=[3])
      ),
    )
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


@pytest.mark.parametrize(
  "cfg, error, match",
  [
    (["type", "NasMutator"], TypeError, "dict"),
    ("NasMutator", TypeError, "dict"),
    (None, TypeError, "dict"),
    (dict(custom_group=None), KeyError, "'type'"),
    (dict(type=3), TypeError, "string"),
  ],
)
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
  built = jm.build(
    dict(type=class_name, size=7, custom_imports=dict(imports=[module_name], allow_failed_imports=False))
  )
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
      dict(
        type=class_name, custom_imports=dict(imports=["jm_no_such_module_xyz", module_name], allow_failed_imports=True)
      )
    )
  assert built.size == 1


@pytest.mark.parametrize(
  "custom_imports, error",
  [
    (["x"], TypeError),
    (dict(allow_failed_imports=True), TypeError),
    (dict(imports=["x"], other=1), KeyError),
    (dict(imports=[3]), TypeError),
  ],
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
  assert cfg == dict(
    model=dict(type="NasMutator", custom_group=[["a", "b"]]), train_cfg=dict(max_epochs=2, lr=0.2), seeds=[0, 1]
  )
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
    [
      "train.lr=0.05",
      "train.epochs=3",
      "model.custom_group=[['a', 'b']]",
      "name=spos tiny",
      "new.deep.key=True",
      "flag=none",
    ],
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


@pytest.mark.parametrize(
  "option, error", [("train.lr", ValueError), ("=3", ValueError), ("train..lr=1", ValueError), ("name.sub=1", KeyError)]
)
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


# MMRazor/mmengine config files: _base_, _delete_, references, scopes -----------------

from jaxmutate.errors import ConfigError, ConfigTypeError, UnknownTypeError  # noqa: E402
from jaxmutate.registry import known_scopes, merge_config, register_scope, split_scope  # noqa: E402


def _write(folder, name, text):
  path = folder / name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(textwrap.dedent(text))
  return path


def test_base_chain_of_three_files_merges_in_order(tmp_path):
  _write(
    tmp_path,
    "_base_/a.py",
    """
      model = dict(type="SPOS", mutator=dict(type="NasMutator", custom_group=None), extra=dict(p=1, q=2))
      epochs = 3
      _helper = dict(width=8)
      """,
  )
  _write(
    tmp_path,
    "_base_/b.py",
    """
      model = dict(extra=dict(q=20, r=30))
      batch_size = 16
      """,
  )
  _write(
    tmp_path,
    "mid/mid.py",
    """
      _base_ = ["../_base_/a.py", "../_base_/b.py"]
      model = dict(mutator=dict(_delete_=True, type="OneShotModuleMutator"))
      epochs = _base_.epochs + 1
      width = _base_._helper.width
      """,
  )
  top = _write(
    tmp_path,
    "top.py",
    """
      _base_ = "./mid/mid.py"
      batch_size = _base_.batch_size * 2
      sizes = [{{_base_.model.extra.q}}, 1]
      extra = {{_base_.model.extra}}
      """,
  )
  cfg = load_config(top)
  assert cfg == dict(
    model=dict(type="SPOS", mutator=dict(type="OneShotModuleMutator"), extra=dict(p=1, q=20, r=30)),
    epochs=4,
    batch_size=32,
    width=8,
    sizes=[20, 1],
    extra=dict(p=1, q=20, r=30),
  )


def test_base_assignments_and_shared_dicts_behave_as_in_mmengine(tmp_path):
  _write(
    tmp_path,
    "base.py",
    """
      nas_backbone = dict(type="DartsBackbone", base_channels=16, num_layers=8)
      model = dict(type="SPOS", architecture=nas_backbone)
      """,
  )
  child = _write(
    tmp_path,
    "child.py",
    """
      _base_ = ["base.py"]
      backbone = _base_.nas_backbone
      backbone.base_channels = 36      # changes what the file inherits, as in mmengine
      _base_.model = dict(type="DARTS", architecture=backbone)
      has_missing = hasattr(_base_, "no_such_key")
      """,
  )
  cfg = load_config(child)
  assert cfg["nas_backbone"]["base_channels"] == 36 and cfg["backbone"]["base_channels"] == 36
  assert cfg["model"] == dict(type="DARTS", architecture=dict(type="DartsBackbone", base_channels=36, num_layers=8))
  assert cfg["has_missing"] is False
  cfg["backbone"]["num_layers"] = 1  # the result shares no dicts
  assert cfg["nas_backbone"]["num_layers"] == 8


def test_file_variables_and_environment_variables(tmp_path, monkeypatch):
  path = _write(
    tmp_path,
    "run_me.py",
    """
      work_dir = "work_dirs/{{ fileBasenameNoExtension }}"
      suffix = "{{ fileExtname }}"
      root = "{{$JM_TEST_DATA_ROOT:/default/data}}/images"
      count = {{'$JM_TEST_COUNT:3'}}
      """,
  )
  monkeypatch.delenv("JM_TEST_DATA_ROOT", raising=False)
  monkeypatch.setenv("JM_TEST_COUNT", "5")
  assert load_config(path) == dict(work_dir="work_dirs/run_me", suffix=".py", root="/default/data/images", count=5)


def test_scope_dirs_resolve_package_bases(tmp_path):
  _write(
    tmp_path,
    "pkg_configs/_base_/runtime.py",
    """
      default_scope = "mmrazor"
      mutator = dict(type="NasMutator")
      """,
  )
  path = _write(
    tmp_path,
    "cfg.py",
    """
      _base_ = ["mmrazor::_base_/runtime.py"]
      epochs = 1
      """,
  )
  cfg = load_config(path, scope_dirs={"mmrazor": tmp_path / "pkg_configs"})
  # mmengine marks the outer typed dicts of a package's base with its scope.
  assert cfg == dict(default_scope="mmrazor", mutator=dict(_scope_="mmrazor", type="NasMutator"), epochs=1)
  with pytest.raises(ConfigError, match=r"cfg\.py.*'mmrazor::_base_/runtime\.py'.*scope_dirs"):
    load_config(path)


def test_custom_imports_in_a_config_file_are_imported(tmp_path, plugin_module):
  module_name, class_name = plugin_module
  path = _write(
    tmp_path,
    "plugin_cfg.py",
    f"""
      custom_imports = dict(imports=["{module_name}"], allow_failed_imports=False)
      model = dict(type="{class_name}", size=3)
      """,
  )
  sys.modules.pop(module_name, None)
  cfg = load_config(path, import_custom_modules=False)
  assert module_name not in sys.modules
  cfg = load_config(path)
  assert module_name in sys.modules and cfg["custom_imports"]["imports"] == [module_name]
  assert jm.build(cfg["model"]).size == 3
  bad = _write(tmp_path, "bad_imports.py", "custom_imports = dict(imports=['jm_no_such_module_xyz'])\n")
  with pytest.raises(ImportError, match=r"bad_imports\.py.*jm_no_such_module_xyz"):
    load_config(bad)


@pytest.mark.parametrize(
  "files, entry, match",
  [
    ({"a.py": "_base_ = 'a.py'\n"}, "a.py", r"a\.py.*cycle.*a\.py -> .*a\.py"),
    (
      {"a.py": "_base_ = ['b.py']\n", "b.py": "_base_ = ['c.py']\n", "c.py": "_base_ = 'a.py'\n"},
      "a.py",
      r"c\.py.*'a\.py' makes a cycle: .*a\.py -> .*b\.py -> .*c\.py -> .*a\.py",
    ),
    ({"a.py": "_base_ = ['missing_base.py']\n"}, "a.py", r"a\.py.*base file 'missing_base\.py' does not exist"),
    ({"a.py": "_base_ = 'b.yaml'\n", "b.yaml": "x: 1\n"}, "a.py", r"a\.py.*'b\.yaml' is not a Python"),
    (
      {"a.py": "_base_ = 'b.py'\nx = _base_.model.depth\n", "b.py": "model = dict(width=1, dept=2)\n"},
      "a.py",
      r"a\.py.*_base_\.model\.depth.*'_base_\.model' has no key 'depth'.*Did you mean \['dept'",
    ),
    (
      {"a.py": "_base_ = 'b.py'\nx = _base_['nope']\n", "b.py": "y = 1\n"},
      "a.py",
      r"a\.py.*_base_\.nope.*no key 'nope'",
    ),
    ({"a.py": "x = _base_.model\n"}, "a.py", r"a\.py.*no key 'model'.*the file has no _base_"),
    (
      {"a.py": "_base_ = 'b.py'\nx = {{_base_.model.depth}}\n", "b.py": "model = dict(width=1)\n"},
      "a.py",
      r"a\.py.*\{\{_base_\.model\.depth\}\}.*no key 'depth'.*b\.py",
    ),
    ({"a.py": "_base_ = ['b' + '.py']\n"}, "a.py", r"a\.py.*line 1.*_base_ must be a path"),
    ({"a.py": "model = dict(\n"}, "a.py", r"a\.py.*syntax error"),
    ({"a.py": "x = '{{$JM_TEST_UNSET_VARIABLE:}}'\n"}, "a.py", r"a\.py.*JM_TEST_UNSET_VARIABLE"),
  ],
)
def test_config_file_errors_name_the_file_and_the_key(tmp_path, monkeypatch, files, entry, match):
  monkeypatch.delenv("JM_TEST_UNSET_VARIABLE", raising=False)
  for name, text in files.items():
    (tmp_path / name).write_text(text)
  with pytest.raises(ConfigError, match=match):
    load_config(tmp_path / entry)


def test_dict_overriding_a_non_dict_needs_delete(tmp_path):
  _write(tmp_path, "b.py", "optimizer = 'sgd'\n")
  path = _write(tmp_path, "a.py", "_base_ = 'b.py'\noptimizer = dict(type='adam')\n")
  with pytest.raises(ConfigTypeError, match=r"a\.py.*optimizer is a dict.*_delete_=True"):
    load_config(path)
  path.write_text("_base_ = 'b.py'\noptimizer = dict(_delete_=True, type='adam')\n")
  assert load_config(path) == dict(optimizer=dict(type="adam"))


def test_merge_config():
  base = dict(a=dict(x=1, y=dict(z=2)), b=[1, 2], c=3)
  assert merge_config(base, dict(a=dict(y=dict(w=4)), b=[3])) == dict(a=dict(x=1, y=dict(z=2, w=4)), b=[3], c=3)
  assert merge_config(base, dict(a=dict(_delete_=True, q=1), d=dict(_delete_=True, e=dict(_delete_=False)))) == dict(
    a=dict(q=1), b=[1, 2], c=3, d=dict(e=dict())
  )
  assert base == dict(a=dict(x=1, y=dict(z=2)), b=[1, 2], c=3)
  with pytest.raises(ConfigTypeError, match=r"a\.x is a dict"):
    merge_config(base, dict(a=dict(x=dict(v=1))))


def test_scopes_aliases_and_unsupported_names(registry):
  registry.register_module(module=Box)
  assert split_scope("mmrazor::Box") == ("mmrazor", "Box") and split_scope("Box") == (None, "Box")
  register_scope("jmtestscope")
  assert "jmtestscope" in known_scopes()
  assert registry.get("jmtestscope.Box") is Box and registry.get("jmtestscope::Box") is Box
  assert isinstance(registry.build(dict(_scope_="jmtestscope", type="Box")), Box)
  registry.register_alias("Crate", "Box")
  assert registry.get("jaxmutate.Crate") is Box and "Crate" in registry and registry.aliases == {"Crate": "Box"}
  with pytest.raises(KeyError, match="already an alias"):
    registry.register_alias("Crate", "Other")
  with pytest.raises(KeyError, match="is registered"):
    registry.register_alias("Box", "Crate")
  registry.register_unsupported("Hook", "hooks are runner plumbing")
  with pytest.raises(UnknownTypeError, match="'Hook' has no equivalent in 'things': hooks are runner plumbing"):
    registry.get("Hook")
  assert registry.unsupported_reason("jmtestscope.Hook") == "hooks are runner plumbing" and "Hook" not in registry
  with pytest.raises(UnknownTypeError, match="'nosuchscope' is not a known scope"):
    registry.get("nosuchscope.Box")
  with pytest.raises(ConfigError, match="_scope_='nosuchscope' is not a known scope"):
    registry.build(dict(_scope_="nosuchscope", type="Box"))
  with pytest.raises(ConfigTypeError, match="_scope_ must be a string"):
    registry.build(dict(_scope_=3, type="Box"))
  with pytest.raises(ValueError, match="scope"):
    register_scope("a.b")


def test_unknown_type_is_a_config_error_and_a_key_error():
  with pytest.raises(UnknownTypeError) as info:
    jm.build(dict(type="NoSuchTypeAnywhere"))
  assert isinstance(info.value, KeyError) and isinstance(info.value, ConfigError)
