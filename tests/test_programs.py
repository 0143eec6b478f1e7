"""porejax.programs: compiled programs kept whole on disk give the jitted function's results, bit for bit,
and a later process finds them without tracing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax import latents, programs

from smooth_generator import smooth_generator


@functools.partial(jax.jit, static_argnames="n")
def _power_sum(x, w, n):
    y = x
    for _ in range(n):
        y = jnp.tanh(y @ w)
    return y, y.sum()


@pytest.fixture
def kept(tmp_path):
    programs.keep_in(tmp_path)
    yield tmp_path
    programs.keep_in(None)


def _new_process(folder, monkeypatch, *fns):
    """Forget the loaded programs (as a new process would) and make any tracing of `fns` fail."""
    programs.keep_in(folder)

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced although the program was kept")

    for fn in fns:
        monkeypatch.setattr(fn, "lower", no_tracing, raising=False)


def _operands(seed=0, shape=(5, 4)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=(shape[1], shape[1])).astype(np.float32)


def test_a_kept_program_gives_the_jitted_results_and_is_found_again_without_tracing(kept, monkeypatch):
    x, w = _operands()
    expected = _power_sum(x, w, n=3)
    first = programs.run(_power_sum, {"n": 3}, x, w)
    assert len(list(kept.glob("*.xla"))) == 1
    _new_process(kept, monkeypatch, _power_sum)
    again = programs.run(_power_sum, {"n": 3}, x, w)
    for a, b, c in zip(expected, first, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert len(list(kept.glob("*.xla"))) == 1


def test_keys_follow_static_arguments_shapes_dtypes_and_settings(monkeypatch):
    x, w = _operands()
    key = programs.program_key(_power_sum, {"n": 3}, (x, w))
    assert programs.program_key(_power_sum, {"n": 3}, (x.copy(), w.copy())) == key  # values do not matter
    others = [
        programs.program_key(_power_sum, {"n": 2}, (x, w)),
        programs.program_key(_power_sum, {"n": 3}, _operands(shape=(6, 4))),
        programs.program_key(_power_sum, {"n": 3}, (x.astype(np.float16), w)),
        programs.program_key(_power_sum, {"n": 3}, ((x,), w)),
    ]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    programs._environment.cache_clear()
    try:
        others.append(programs.program_key(_power_sum, {"n": 3}, (x, w)))
    finally:
        monkeypatch.delenv("XLA_FLAGS")
        programs._environment.cache_clear()
    assert len({key, *others}) == len(others) + 1


def test_a_damaged_program_file_is_compiled_again_and_replaced(kept):
    x, w = _operands()
    programs.run(_power_sum, {"n": 2}, x, w)
    (path,) = kept.glob("*.xla")
    size = path.stat().st_size
    path.write_bytes(b"not a program")
    programs.keep_in(kept)
    result = programs.run(_power_sum, {"n": 2}, x, w)
    np.testing.assert_array_equal(np.asarray(result[0]), np.asarray(_power_sum(x, w, n=2)[0]))
    assert path.stat().st_size == size
    assert not list(kept.glob("*.part"))


def test_off_is_the_jitted_function_and_writes_nothing(tmp_path):
    programs.keep_in(None)
    x, w = _operands()
    np.testing.assert_allclose(np.asarray(programs.run(_power_sum, {"n": 1}, x, w)[0]), np.tanh(x @ w), rtol=1e-5)
    assert programs.folder() is None


def test_generation_and_latents_through_kept_programs_are_unchanged(kept, monkeypatch):
    """A generator's tiles and a seed's latent: the same with kept programs as without, and a later
    process that loads them traces neither the tile program nor the latent draw."""
    gen = smooth_generator()
    programs.keep_in(None)
    z = latents.from_seed(5, (2, 2, 2, gen.config.latent_channels))
    np.testing.assert_array_equal(z, np.asarray(latents.draw(jax.random.PRNGKey(5), z.shape)))
    plain = gen.generate(z, periodic="xy", chunk=16)
    programs.keep_in(kept)
    assert np.array_equal(latents.from_seed(5, z.shape), z)
    first = gen.generate(z, periodic="xy", chunk=16)
    from porejax.generate import frozen

    _new_process(kept, monkeypatch, frozen._indices_and_confidence, latents._draw)
    again = gen.generate(latents.from_seed(5, z.shape), periodic="xy", chunk=16)
    for a, b, c in zip(plain, first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1, 2**31, 2**32 + 5, -1])
def test_seed_keys_are_jax_prng_keys(seed):
    np.testing.assert_array_equal(latents.seed_key(seed), np.asarray(jax.random.key_data(jax.random.PRNGKey(seed))))
