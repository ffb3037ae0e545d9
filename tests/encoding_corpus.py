"""One candidates sheet, written in the encodings Excel's plain "CSV" uses around the world.

Excel's "CSV" (not "CSV UTF-8") is saved in the Windows code page of the user's language.
`sheet_text(language, rows)` is the same candidates sheet (uid, names, email, city, note)
with the names and places of one language; `write_sheet` saves it in an encoding. The
encoding tests write every (language, encoding, length) this way into a temporary folder,
so nothing here is a copied file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

#: Per language: first names, last names, cities, and notes a recruiter might write.
LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "western": (
        ("José", "João", "Françoise", "Øyvind", "Zoë", "Björn", "Inés", "Noémie", "Jürgen", "Dana"),
        ("Müller", "Conceição", "García", "Søndergaard", "Dubois", "Nuñez", "Groß", "Smith"),
        ("Málaga", "Zürich", "København", "Besançon", "São Paulo", "Göteborg"),
        ("À rappeler lundi", "Très motivée", "Größere Firma bevorzugt", "Entrevista el martes"),
    ),
    "hebrew": (
        ("עדי", "נועה", "יוסי", "מיכל", "אבי", "שירה", "דנה", "איתי", "רונית"),
        ("כהן", "לוי", "מזרחי", "פרץ", "ביטון", "אברהם", "פרידמן", "שפירא"),
        ("תל אביב", "ירושלים", "חיפה", "באר שבע", "רמת גן", "נתניה"),
        ("לחזור אליה ביום שני", "מועמד מצוין", "ראיון שני בשבוע הבא", "מעדיף משרה חלקית"),
    ),
    "greek": (
        ("Λεωνίδας", "Ελένη", "Γιώργος", "Μαρία", "Νίκος", "Κατερίνα", "Δημήτρης", "Σοφία"),
        ("Παπαδόπουλος", "Οικονόμου", "Γεωργίου", "Νικολάου", "Καραγιάννη", "Βλάχου"),
        ("Αθήνα", "Θεσσαλονίκη", "Πάτρα", "Ηράκλειο", "Λάρισα", "Βόλος"),
        ("Να την καλέσουμε τη Δευτέρα", "Πολύ καλός υποψήφιος", "Δεύτερη συνέντευξη"),
    ),
    "cyrillic": (
        ("Алексей", "Мария", "Дмитрий", "Ольга", "Иван", "Татьяна", "Сергей", "Наталья"),
        ("Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Новиков"),
        ("Москва", "Санкт-Петербург", "Новосибирск", "Екатеринбург", "Казань", "Самара"),
        ("Перезвонить в понедельник", "Отличный кандидат", "Второе собеседование"),
    ),
    "japanese": (
        ("さくら", "ひなた", "たろう", "ゆうき", "はると", "あおい", "けんた", "みさき"),
        ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"),
        ("東京", "大阪", "名古屋", "札幌", "福岡", "横浜"),
        ("月曜日に折り返し電話", "とても優秀な候補者", "来週二次面接", "パートタイム希望"),
    ),
    "chinese": (
        ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊"),
        ("王", "李", "张", "刘", "陈", "杨", "黄", "赵"),
        ("北京", "上海", "广州", "深圳", "成都", "杭州"),
        ("周一回电话", "非常优秀的候选人", "下周第二轮面试", "希望兼职"),
    ),
    # Two more, of Excel's other Latin code pages, to show they are never read as cp1252.
    "central": (
        ("Jiří", "Łukasz", "Kateřina", "Małgorzata", "Zdeněk", "Paweł", "Tomáš", "Zofia"),
        ("Dvořák", "Wiśniewski", "Černý", "Dąbrowski", "Růžička", "Kamińska", "Novák"),
        ("Praha", "Kraków", "Plzeň", "Łódź", "Děčín", "Gdańsk"),
        ("Zavolat v pondělí", "Świetny kandydat", "Druhý pohovor příští týden"),
    ),
    "turkish": (
        ("Işık", "Ayşe", "Mehmet", "Gül", "Çağla", "Emre", "Şule", "Oğuz"),
        ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Öztürk"),
        ("İstanbul", "Ankara", "İzmir", "Muğla", "Eskişehir"),
        ("Pazartesi geri ara", "Çok iyi aday", "Gelecek hafta ikinci görüşme"),
    ),
}

#: The language each encoding is written with ("all": every language, for Unicode).
ENCODINGS: dict[str, str] = {
    "utf-8": "all",
    "utf-8-sig": "all",
    "utf-16": "all",
    "cp1252": "western",
    "cp1255": "hebrew",
    "cp1253": "greek",
    "cp1251": "cyrillic",
    "shift_jis": "japanese",
    "gb18030": "chinese",
}

HEADERS = ("uid", "first_name", "last_name", "email", "custom_fields.City", "note")


def sheet_rows(language: str, rows: int) -> list[tuple[str, ...]]:
    """The header and `rows` candidates whose names, cities and notes are of `language`."""
    languages = list(LANGUAGES)[:6] if language == "all" else [language]
    out = [HEADERS]
    for i in range(rows):
        firsts, lasts, cities, notes = LANGUAGES[languages[i % len(languages)]]
        out.append(
            (
                f"AE.{1000 + i}",
                firsts[i % len(firsts)],
                lasts[(i * 3) % len(lasts)],
                f"candidate{i}@example.com",
                cities[(i * 5) % len(cities)],
                notes[(i * 7) % len(notes)] if i % 3 else "",
            )
        )
    return out


def sheet_text(language: str, rows: int) -> str:
    """`sheet_rows` as CSV text, the way Excel writes it (CRLF, quotes only where needed)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(sheet_rows(language, rows))
    return out.getvalue()


def write_sheet(path: Path, encoding: str, rows: int) -> list[tuple[str, ...]]:
    """Write the sheet of `encoding`'s language in `encoding`; return its rows as written."""
    language = ENCODINGS[encoding]
    path.write_bytes(sheet_text(language, rows).encode(encoding))
    return sheet_rows(language, rows)
