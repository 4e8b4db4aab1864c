"""Static catalogues served by the fake API: templates, music, game videos and meme hooks."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = [
    "DEFAULT_TEMPLATE_ID",
    "GAME_VIDEOS",
    "MEME_HOOKS",
    "MUSIC",
    "TEMPLATES",
    "template_slug",
]

_STATIC = "https://cf.ssemble.com/ssemble-static-assets"
_ASSETS = "https://cf.ssemble.com/ssemble-assets"

DEFAULT_TEMPLATE_ID = "660b8531aedb346bbe26eb43"

_TEMPLATE_ROWS = (
    ("66e386d23b11d1a71b755e44", "hormozi1", "Hormozi 1"),
    ("66fcc4c67769688a1d5ad08a", "hormozi2", "Hormozi 2"),
    (DEFAULT_TEMPLATE_ID, "karaoke", "Karaoke"),
    ("66a8bc861029156127f6c89a", "ali", "Ali"),
    ("660b85be34b1eda55a6a7f86", "beast", "Mr Beast"),
    ("660b859818784d713119fcc7", "simple", "Simple"),
    ("66c5cda587afa8f65d4b127e", "iman", "Iman"),
    ("66fcd14d7769688a1d5ad08d", "iman2", "Iman 2"),
    ("68a848bc9526bfd0f3068334", "box", "Box"),
)

TEMPLATES: tuple[dict[str, Any], ...] = tuple(
    {
        "templateId": template_id,
        "name": slug,
        "displayName": display_name,
        "thumbnail": f"{_STATIC}/{slug}_style.png",
        "order": order,
        "preview": f"{_STATIC}/{slug}_style.png",
        "gif": f"{_STATIC}/{slug}.gif",
    }
    for order, (template_id, slug, display_name) in enumerate(_TEMPLATE_ROWS)
)


def template_slug(template_id: str) -> str | None:
    """Return the slug of the template with this ID, or None when there is none."""
    return next((t["name"] for t in TEMPLATES if t["templateId"] == template_id.lower()), None)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())


_MUSIC_MOODS = ("Night", "Sunny", "Neon", "Golden", "Silver", "Velvet", "Static", "Paper")
_MUSIC_THINGS = ("Drive", "Loop", "Rain", "Hour", "Lining", "Dreams")
_MUSIC_NAMES = (
    *("Arms Dealer", "Blade Runner", "Feeling Blue", "Hell n Back"),
    *(f"{a} {b}" for a, b in itertools.product(_MUSIC_MOODS, _MUSIC_THINGS)),
)[:45]

MUSIC: tuple[dict[str, Any], ...] = tuple(
    {"name": name, "duration": 90 + (i * 37) % 120}
    | ({"url": f"{_ASSETS}/music/{_slug(name)}.mp3"} if i % 3 else {})
    for i, name in enumerate(_MUSIC_NAMES)
)

_GAME_NAMES = (
    *("Minecraft Parkour", "GTA V Stunts", "Subway Surfers", "Fortnite Build Battle"),
    *("Temple Run", "Rocket League", "Geometry Dash", "Trackmania", "Mario Kart", "Fall Guys"),
    *("Slither Snake", "Satisfying Slime", "Soap Cutting", "Kinetic Sand", "Marble Run"),
    *("CS Surf", "Valorant Clutch", "Apex Legends", "Call of Duty", "Roblox Obby", "Among Us"),
    *("Tetris Speedrun", "Stumble Guys", "Hill Climb Racing", "Flappy Bird", "Beat Saber"),
    *("Asphalt Racing", "Paper.io", "Helix Jump", "Stack Ball"),
)

GAME_VIDEOS: tuple[dict[str, Any], ...] = tuple(
    {
        "name": name,
        "preview": f"{_ASSETS}/game/{_slug(name)}.jpg",
        "video": f"{_ASSETS}/game/{_slug(name)}.mp4",
        "video_duration": 300 + (i * 53) % 600,
    }
    for i, name in enumerate(_GAME_NAMES)
)

_HOOK_MOODS = (
    *("Dramatic", "Shocked", "Crying", "Laughing", "Confused"),
    *("Angry", "Sleepy", "Dancing", "Screaming"),
)
_HOOK_SUBJECTS = (
    *("Zoom", "Cat", "Dog", "Baby", "Grandma", "Goat", "Penguin", "Chef", "Referee"),
    *("Toddler", "Parrot", "Llama", "Hamster", "Seal", "Frog", "Duck", "Owl", "Raccoon"),
)
_HOOK_NAMES = (
    "Baby Vomit",
    *(f"{a} {b}" for a, b in itertools.product(_HOOK_MOODS, _HOOK_SUBJECTS)),
)[:159]

MEME_HOOKS: tuple[dict[str, Any], ...] = tuple(
    {
        "name": name,
        "preview": f"{_ASSETS}/hooks/{_slug(name)}.jpg",
        "video": f"{_ASSETS}/hooks/{_slug(name)}.mp4",
        "video_duration": round(2 + (i * 7 % 31) / 10, 1),
    }
    for i, name in enumerate(_HOOK_NAMES)
)
