"""The voice tutor platform: companions, spoken lessons, lesson history, bookmarks and plans."""
