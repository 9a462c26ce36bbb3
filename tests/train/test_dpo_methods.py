import dataclasses

import pytest

from nlp_jax.train.dpo_methods import DPOMethod, check_continuations, curve_label, find_method


def test_labels_name_one_curve_per_setting_and_keep_the_stored_runs_names():
    assert DPOMethod(name="a", beta=0.1).label == "DPO"
    assert DPOMethod(name="a", beta=0.1, loss_type="cdpo", label_smoothing=0.1).label == "cDPO"
    # the labels the stored runs were judged under (README's table) are unchanged
    assert DPOMethod(name="a", beta=0.5, lr=5e-5, rounds=16).label == "DPO, iterative, beta 0.5, lr 5e-05"
    assert (DPOMethod(name="a", beta=0.5, rounds=6, min_gap=0.3).label
            == "DPO, iterative, beta 0.5, oracle gap > 0.3")
    assert DPOMethod(name="a", beta=1.0, soft_labels=0.1).label == "DPO, beta 1, soft labels tau 0.1"
    assert (DPOMethod(name="a", beta=0.5, rounds=12, samples=8, extremes=True).label
            == "DPO, iterative, beta 0.5, best vs worst of 8 samples")
    assert DPOMethod(name="a", beta=0.5, samples=8).label == "DPO, beta 0.5, 8 samples"


def test_recorded_settings_leave_the_later_fields_out_while_unset():
    plain = DPOMethod(name="a", beta=0.5, lr=5e-5, rounds=16)
    assert set(plain.recorded()) == {"name", "beta", "loss_type", "label_smoothing", "lr", "epochs", "rounds"}
    assert not plain.own_pairs
    extreme = dataclasses.replace(plain, samples=8, extremes=True)
    assert extreme.recorded()["samples"] == 8 and extreme.recorded()["extremes"] is True and extreme.own_pairs
    with pytest.raises(ValueError, match="samples"):
        DPOMethod(name="a", beta=0.5, samples=1)


def test_a_continuation_must_start_from_an_earlier_method_with_fewer_rounds_and_the_same_objective():
    base = DPOMethod(name="base", beta=0.5, rounds=4)
    more = DPOMethod(name="more", beta=0.5, rounds=8, continues="base")
    check_continuations((base, more))
    check_continuations((base, dataclasses.replace(more, lr=1e-4, samples=8, extremes=True)))  # learns otherwise
    for bad in ((more, base), (base, dataclasses.replace(more, rounds=4)), (base, dataclasses.replace(more, beta=1.0)),
                (base, dataclasses.replace(more, loss_type="ipo")), (base, dataclasses.replace(more, continues="x"))):
        with pytest.raises(ValueError, match="more continues=.* must name a method listed before it with fewer "
                                             "rounds and the same beta, loss_type, label_smoothing"):
            check_continuations(bad)
    assert find_method((base, more), "more") is more
    with pytest.raises(KeyError, match="no method named 'x'; the methods are base, more"):
        find_method((base, more), "x")


def test_a_continuation_with_the_same_settings_extends_the_curve_and_one_with_others_starts_its_own():
    base = DPOMethod(name="base", beta=0.5, lr=5e-5, rounds=4)
    same = DPOMethod(name="same", beta=0.5, lr=5e-5, rounds=8, continues="base")
    other = DPOMethod(name="other", beta=0.5, lr=1e-4, rounds=8, samples=8, extremes=True, continues="base")
    methods = (base, same, other)
    assert curve_label(methods, base) == curve_label(methods, same) == "DPO, iterative, beta 0.5, lr 5e-05"
    assert (curve_label(methods, other)
            == "DPO, iterative, beta 0.5, lr 0.0001, best vs worst of 8 samples, after base")


def test_an_online_method_draws_its_own_pairs_and_refuses_the_iterative_fields():
    online = DPOMethod(name="o", beta=0.5, lr=1e-4, online_steps=600, samples=4)
    assert online.label == "DPO, online 600 steps, beta 0.5, lr 0.0001, best vs worst of 4 samples" and online.own_pairs
    longer = dataclasses.replace(online, name="o2", online_steps=1200)  # another schedule: a curve of its own
    assert (curve_label((online, longer), longer)
            == "DPO, online 1,200 steps, beta 0.5, lr 0.0001, best vs worst of 4 samples")
    assert online.recorded()["online_steps"] == 600 and "online_steps" not in DPOMethod(name="a", beta=1).recorded()
    assert (DPOMethod(name="o", beta=1.0, online_steps=10).label
            == "DPO, online 10 steps, beta 1, best vs worst of 2 samples")
    for bad in (dict(rounds=2), dict(continues="x"), dict(epochs=2), dict(min_gap=0.1)):
        with pytest.raises(ValueError, match="o: online DPO .* rounds, continues, epochs and min_gap do not apply"):
            dataclasses.replace(online, **bad)
    with pytest.raises(ValueError, match="online_steps"):
        DPOMethod(name="o", beta=0.5, online_steps=-1)
