"""Command line: ``python -m course_lib doctor``."""

import argparse

from course_lib import doctor


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description="The course's command line.")
    parser.add_argument("command", choices=["doctor"], help="doctor: check the installation and print a report")
    parser.parse_args()
    return doctor.main()


if __name__ == "__main__":
    raise SystemExit(main())
