import numpy as np
import pandas as pd

from liveness.identity import RollIndex, link_by_number_and_name


def test_a_number_with_a_wrong_check_character_links_by_name_birth_date_and_sex() -> None:
    roll = RollIndex(
        persons=pd.DataFrame(
            {
                "person_id": [1, 2, 3, 4],
                "id_number": ["330702194501011230", "330702195002021228", "a", "b"],
                "id_status": ["valid"] * 4,
                "name": ["张三", "李四", "王五", "王五"],
                "sex": ["M", "F", "M", "M"],
                "birth_date": pd.to_datetime(
                    ["1945-01-01", "1950-02-02", "1955-03-03", "1955-03-03"]
                ),
            }
        )
    )
    numbers = pd.Series(
        [
            "330702194501011231",  # 张三's number, last character mistyped
            "330702195002021229",  # 李四's birth date and sex, but another name below
            "330702195503031211",  # two 王五 born the same day: ambiguous, links no one
            "330702194501011230",  # valid: not this function's business
        ]
    )
    statuses = pd.Series(["bad_check", "bad_check", "bad_check", "valid"])
    names = pd.Series(["张三", "赵六", "王五", "张三"])
    linked = link_by_number_and_name(numbers, statuses, names, roll)
    assert linked.tolist() == [1, -1, -1, -1]
    assert linked.dtype == np.int32
