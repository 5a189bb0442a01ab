from textcls_core.gate import check_promotion


def test_first_version_passes_when_floors_hold():
    r = check_promotion("test_macro_f1", 0.80, {"a": 0.8, "b": 0.8}, None, min_metric=0.7, min_class_f1=0.5)
    assert r.passed and r.reasons == []
    assert "no champion yet" in r.describe()


def test_each_check_can_fail_with_its_reason():
    r = check_promotion("test_macro_f1", 0.60, {"a": 0.9, "b": 0.3}, 0.65, min_metric=0.7, min_class_f1=0.5,
                        regression=(0.70, 0.80), regression_tolerance=0.05)
    assert not r.passed
    assert [c["check"] for c in r.checks if not c["passed"]] == ["floor", "class_floor", "improvement", "regression_set"]
    assert "below: b 0.3000" in r.reasons[1]


def test_improvement_margin_and_ties():
    assert not check_promotion("m", 0.80, {}, 0.80).passed  # a tie is not an improvement
    assert check_promotion("m", 0.801, {}, 0.80).passed
    assert not check_promotion("m", 0.805, {}, 0.80, min_improvement=0.01).passed
    assert check_promotion("m", 0.81, {}, 0.80, min_improvement=0.01).passed


def test_regression_tolerance():
    assert check_promotion("m", 0.9, {}, 0.8, regression=(0.79, 0.80), regression_tolerance=0.02).passed
    assert not check_promotion("m", 0.9, {}, 0.8, regression=(0.77, 0.80), regression_tolerance=0.02).passed
    assert check_promotion("m", 0.9, {}, None, regression=(0.5, None)).passed
