"""HH-RLHF pairs: prompt and replies split at the last shared Assistant turn, and the seeded split."""

from nlp_jax.data.hh_rlhf import TURN, hh_split, read_hh_rlhf, split_dialogue


def test_split_dialogue_cuts_at_the_last_assistant_turn():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: a pun"
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"
    assert split_dialogue(c, r) == ("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant:", " a pun", " no")
    assert split_dialogue(c, c) is None  # no preference
    assert split_dialogue(c, "\n\nHuman: other\n\nAssistant: no") is None  # no shared prompt
    assert split_dialogue("\n\nHuman: hi\n\nAssistant: ", r) is None  # an empty reply


def test_the_real_file_and_its_seeded_split():
    triples = read_hh_rlhf()
    assert len(triples) == 2312 and sum(t is None for t in triples) == 8
    train, held, left = hh_split(2000, seed=0)
    assert (len(train), len(held), left) == (1992, 312, 8)
    assert all(p.endswith(TURN) and c != r for p, c, r in train + held)
    assert hh_split(2000, seed=0)[1] == held and hh_split(2000, seed=1)[1] != held
    assert not {p + c for p, c, _ in train} & {p + c for p, c, _ in held}
