"""``lesson`` command: check a lesson file, list the bundled lessons, print a lesson's handout."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("lesson", help="check a lesson file (TOML or JSON), list the bundled lessons, or write a "
                                      "lesson's printable handout")
    p.add_argument("action", choices=("check", "list", "handout"))
    p.add_argument("file", nargs="?", help="a lesson file (check, handout) or a bundled lesson's title (handout)")
    p.add_argument("--base", default="", help="the address links start with (handout), e.g. http://10.0.0.5:8501")
    p.add_argument("-o", "--out", default=None, help="write the handout's HTML here (default: print it)")
    p.add_argument("--json", action="store_true", help="check, list: print JSON; handout: write the JSON beside -o")
    p.set_defaults(func=run)
    return p


def _lesson(name: str):
    from explorer.workshop.lessons import LessonError, bundled_lessons, load_lesson_file

    if name and Path(name).exists():
        return load_lesson_file(name)
    bundled = bundled_lessons()
    if name in bundled:
        return bundled[name]
    raise LessonError(f"{str(name)[:60]}: no such file, and not a bundled lesson ({'; '.join(bundled)})")


def run(args) -> int:
    from explorer.workshop.lessons import bundled_lessons

    if args.action == "list":
        rows = [dict(title=t, steps=len(l.steps), minutes=l.minutes, questions=sum(s.question is not None
                                                                                   for s in l.steps))
                for t, l in bundled_lessons().items()]
        print(json.dumps(rows, indent=2) if args.json else
              "\n".join(f"{r['title']}: {r['steps']} steps, {r['minutes']:g} min, {r['questions']} questions"
                        for r in rows))
        return 0
    if not args.file:
        from explorer.workshop.lessons import LessonError

        raise LessonError(f"{args.action}: name a lesson file or a bundled lesson's title")
    lesson = _lesson(args.file)
    if args.action == "check":
        if args.json:
            print(json.dumps(lesson.to_dict(), indent=2, ensure_ascii=False))
        else:
            print(f"ok: {lesson.title}: {len(lesson.steps)} steps, {lesson.minutes:g} min")
            for s in lesson.steps:
                print(f"  {s.index + 1}. {s.title} ({s.page_title}, {s.minutes:g} min) {s.link(args.base)}")
        return 0
    from explorer.workshop.takehome import handout_data, render_html

    doc = handout_data(lesson, base_url=args.base)
    html = render_html(doc)
    if args.out:
        Path(args.out).write_text(html, encoding="utf-8")
        if args.json:
            Path(args.out).with_suffix(".json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        print(f"wrote {args.out}")
    else:
        print(html)
    return 0
