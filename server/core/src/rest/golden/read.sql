we"ird?
SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT "t0"."id" AS "id", "t0"."owner" AS "owner", "t0"."title" AS "title", "t0"."data" AS "data" FROM "public"."we""ird" AS "t0" LIMIT 100) t
[]

we"ird?select=id,heading:title,data->a->>b,id::text&title=ilike.*a*&order=id.desc.nullslast&limit=5&offset=10
SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT "t0"."id" AS "id", "t0"."title" AS "heading", ("t0"."data"->$3::text->>$4::text) AS "b", ("t0"."id")::text AS "id" FROM "public"."we""ird" AS "t0" WHERE ("t0"."title"::text ILIKE $1::text) AND ("t0"."owner" = $2::text::uuid) ORDER BY "t0"."id" DESC NULLS LAST LIMIT 5 OFFSET $5::text::bigint) t
[Text(Some("%a%")), Text(Some("u1")), Text(Some("a")), Text(Some("b")), Text(Some("10"))]

posts?select=title,author:users(name),comments(body)&comments.order=id.desc&comments.limit=2
SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT "t0"."title" AS "title", (SELECT row_to_json(e) FROM (SELECT "t1"."name" AS "name" FROM "public"."users" AS "t1" WHERE "t0"."author_id" = "t1"."id" AND (NOT ("t1"."name" IS NULL)) LIMIT 1) e) AS "author", (SELECT coalesce(json_agg(e), '[]'::json) FROM (SELECT "t2"."body" AS "body" FROM "public"."comments" AS "t2" WHERE "t2"."post_id" = "t0"."id" ORDER BY "t2"."id" DESC LIMIT 2) e) AS "comments" FROM "public"."posts" AS "t0" LIMIT 100) t
[]

users?select=name,posts!inner(title)&posts.title=eq.x
SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT "t0"."name" AS "name", (SELECT coalesce(json_agg(e), '[]'::json) FROM (SELECT "t2"."title" AS "title" FROM "public"."posts" AS "t2" WHERE "t2"."author_id" = "t0"."id" AND ("t2"."title" = $2::text::text) LIMIT 100) e) AS "posts" FROM "public"."users" AS "t0" WHERE EXISTS (SELECT 1 FROM "public"."posts" AS "t1" WHERE "t1"."author_id" = "t0"."id" AND ("t1"."title" = $1::text::text)) LIMIT 100) t
[Text(Some("x")), Text(Some("x"))]

posts?select=title,top_comment(body)
SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) FROM (SELECT "t0"."title" AS "title", (SELECT row_to_json(e) FROM (SELECT "t1"."body" AS "body" FROM "public"."top_comment"("t0"::"public"."posts") AS "t1" LIMIT 1) e) AS "top_comment" FROM "public"."posts" AS "t0" LIMIT 100) t
[]

