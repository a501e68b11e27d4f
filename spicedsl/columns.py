"""The data columns with a fixed meaning in a model; any other ``data.NAME`` is an extra
input column of that name."""

CHOICE_COLUMN = "choice"  # one-hot: 1 for the chosen action
REWARD_COLUMN = "reward"  # the chosen action's reward, broadcast to every action
REWARDS_COLUMN = "rewards"  # every action's reward (counterfactual tasks: reward_0, reward_1, ...)
